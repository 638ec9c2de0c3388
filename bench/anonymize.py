"""Exported generator on CPU: per-face latency (batch 1) and throughput (batch 32), torch eager vs onnxruntime;
then whole photos through ``Anonymizer.many``: faces/s with 1 photo per generator call vs N photos per call.

    python bench/anonymize.py [--widths 32 512] [--repeats 3] [--photos 16] [--photo-width 512]

For each width an export is written to a temporary folder (random weights: timing only) at the width's
resolution (demo: c = 32 at 32 px; paper: c = 512 at 128 px, 123 GFLOP per face), then both backends
run the same inputs in one process, alternating, and the best of ``--repeats`` runs is reported.
"""

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import onnxruntime
import torch

from gan.export import export, load_generator
from gan.generator import Generator, GeneratorConfig

RESOLUTION = {32: 32, 512: 128}


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="*", default=[32, 512], help="none: only the per-call comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photos", type=int, default=16, help="photos for the per-call comparison (0: skip it)")
    parser.add_argument("--photo-width", type=int, default=512, help="generator width of that comparison")
    parser.add_argument("--photo-batches", type=int, nargs="+", default=[4, 16], help="photos per call compared")
    args = parser.parse_args()
    print(f"CPU, torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}")
    print(f"{'width':>5} {'res':>4} {'backend':>12} {'batch 1 ms/face':>16} {'batch 32 faces/s':>17}")
    for width in args.widths:
        r = RESOLUTION.get(width, 128)
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(0)
            folder = export(Generator(GeneratorConfig(width), r), Path(tmp) / "export", "floor")
            model = load_generator(folder)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            session = onnxruntime.InferenceSession(str(folder / "generator.onnx"), options,
                                                   providers=["CPUExecutionProvider"])
            for batch in (1, 32):
                condition = torch.rand(batch, 3, r, r) * 2 - 1
                mask = torch.zeros(batch, 1, r, r)
                mask[..., r // 4 : 3 * r // 4, r // 4 : 3 * r // 4] = 1
                keypoints, z = torch.rand(batch, 7, 2), torch.zeros(batch, 32, 4, 4)
                feeds = {"condition": condition.numpy(), "mask": mask.numpy(), "keypoints": keypoints.numpy(),
                         "z": z.numpy()}
                repeats = args.repeats if (width < 512 or batch == 1) else 1
                with torch.no_grad():
                    t_torch = best_time(partial(model, condition, mask, keypoints, z), repeats)
                t_onnx = best_time(partial(session.run, None, feeds), repeats)
                if batch == 1:
                    latency = {"torch eager": t_torch * 1000, "onnxruntime": t_onnx * 1000}
                else:
                    rate = {"torch eager": batch / t_torch, "onnxruntime": batch / t_onnx}
            for backend in ("torch eager", "onnxruntime"):
                print(f"{width:>5} {r:>4} {backend:>12} {latency[backend]:>16.1f} {rate[backend]:>17.2f}")
            print(f"{'':>5} {'':>4} {'onnx/torch':>12} {latency['torch eager'] / latency['onnxruntime']:>15.2f}x "
                  f"{rate['onnxruntime'] / rate['torch eager']:>16.2f}x")
    if args.photos:
        photos_per_call(args.photo_width, args.photos, args.photo_batches)


def photos_per_call(width: int, count: int, batches: list[int]) -> None:
    """The demo photos (cycled to ``count``, one face each: their first) through ``Anonymizer.many`` with
    ``batch_size`` 1 (each photo's face generated alone, as a photo-at-a-time tool does) and each of ``batches``
    (that many photos' faces per call, as ``gan.anonymize`` batches a folder); crop, condition and paste included."""
    import json

    import numpy as np
    from PIL import Image

    from data.demo import HERE as DEMO
    from gan.anonymize import Anonymizer

    faces = json.loads((DEMO / "annotations.json").read_text())
    names = sorted(faces)
    photos, boxes, points = [], [], []
    for i in range(count):
        name = names[i % len(names)]
        photos.append(np.asarray(Image.open(DEMO / "photos" / name).convert("RGB")))
        face = faces[name][0]
        boxes.append(np.array([face["box"]], dtype=float))
        points.append(np.array([[p if p is not None else [-1, -1] for p in face["keypoints"]]], dtype=float))
    r = RESOLUTION.get(width, 128)
    print(f"\nphotos per generator call: {count} demo photos, one face each, c = {width} at {r} px "
          "(Anonymizer.many, crop + generate + paste)")
    print(f"{'backend':>12} {'photos/call':>12} {'faces/s':>9} {'vs 1/call':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        folder = export(Generator(GeneratorConfig(width), r), Path(tmp) / "export", "floor")
        for backend in ("torch", "onnx"):
            rates = {}
            for batch in [1, *batches]:
                anonymizer = Anonymizer.from_export(folder, backend, batch_size=batch)
                anonymizer.many(photos[:batch], boxes[:batch], points[:batch])  # warm-up at this batch
                start = time.perf_counter()
                anonymizer.many(photos, boxes, points)
                rates[batch] = count / (time.perf_counter() - start)
                print(f"{backend:>12} {batch:>12} {rates[batch]:>9.2f} {rates[batch] / rates[1]:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()
