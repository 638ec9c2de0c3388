"""Images per second delivered by the training loader, prepared format vs PNGs, 0 and 2 workers.

    python bench/data_throughput.py [--samples 4096] [--seconds 4]

Builds a temporary dataset from the demo faces (in DeepPrivacy's PNG layout and in the prepared format),
then times ``FaceDataModule.scheduled_loader`` plus the on-device conditioning (uint8 -> float, area
downsampling, mask, condition) at 8, 32 and 128 px with the paper's batch sizes, all in one run.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.convert import convert
from data.demo import build_demo
from data.prepared import PreparedDataset
from data.record import to_float_image
from gan.conditioning import condition_batch
from gan.training.datamodule import FaceDataModule
from gan.training.schedule import PAPER_BATCH_SIZES, Schedule


def make_sources(root: Path, samples: int) -> tuple[Path, Path]:
    demo = PreparedDataset(build_demo(root / "demo") and root / "demo")
    layout = root / "png" / "train"
    (layout / "images" / "128").mkdir(parents=True)
    (layout / "bounding_box").mkdir()
    order = np.arange(samples) % len(demo)
    for i, j in enumerate(order):
        Image.fromarray(demo[j].image).save(layout / "images" / "128" / f"{i}.png")
    np.save(layout / "landmarks.npy", demo.keypoints[order])
    np.save(layout / "bounding_box" / "128.npy", demo.boxes[order] * 128)
    convert(str(root / "png"), str(root / "prepared"), workers=2, progress=False)
    return root / "png", root / "prepared"


def throughput(path: Path, resolution: int, workers: int, seconds: float) -> float:
    batch = PAPER_BATCH_SIZES[resolution]
    schedule = Schedule(8, 8, batch_sizes={8: batch}, total_images=10**12)  # one fixed batch size
    module = FaceDataModule(str(path), num_workers=workers, flip_probability=0.0)
    loader = iter(module.scheduled_loader(schedule))
    for _ in range(2 + 2 * workers):  # warm up: workers started, page cache filled
        next(loader)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        faces = next(loader)
        conditioned = condition_batch(to_float_image(faces.image), faces.box, faces.keypoints, resolution)
        images += len(conditioned.image)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the loader's main process; workers are separate processes
    with tempfile.TemporaryDirectory() as tmp:
        png, prepared = make_sources(Path(tmp), args.samples)
        print(f"{args.samples} samples, images/s (loader + conditioning on CPU), torch threads 1")
        print(f"{'source':>9} {'workers':>7} {'8 px':>8} {'32 px':>8} {'128 px':>8}")
        results = {}
        for name, path in (("prepared", prepared), ("png", png)):
            for workers in (0, 2):
                rates = [throughput(path, r, workers, args.seconds) for r in (8, 32, 128)]
                results[name, workers] = rates
                print(f"{name:>9} {workers:>7} " + " ".join(f"{rate:8.0f}" for rate in rates))
        best = max(results["prepared", 0][2], results["prepared", 2][2])
        print(f"prepared / png at 128 px (best of 0 and 2 workers): "
              f"{best / max(results['png', 0][2], results['png', 2][2]):.1f}x")


if __name__ == "__main__":
    main()
