"""Cost of the privacy/utility report on this machine: faces per second per method and in total.

    python bench/privacy.py [--faces 96] [--workers 1 2] [--model EXPORT_DIR]

Part by part on the demo faces (repeated to ``--faces``): the anonymization of every method (generator: the
export, a random-weight demo-width one by default), the dlib measurement per method (single process: a
descriptor of the anonymised face, a HOG detection, landmarks when detected; the original's side once per
face), the FID of all methods, and the whole report (``gan.privacy.crop_report``) with each ``--workers``
count, side by side in one run. The projection to 1,000 faces is linear in the number of faces.

Then the downstream experiment (``gan.privacy.downstream``) per method: the six demo photos copied
``--downstream-copies`` times to train on and the six originals to test on; the time to anonymise the training
photos, to train the HOG detector (dlib, all cores; it includes making the photos) and to detect per test photo.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from data.demo import build_demo
from data.face_analysis import FaceAnalyzer
from data.prepared import PreparedDataset
from gan.export import export, load_generator
from gan.generator import Generator, GeneratorConfig
from gan.privacy.cli import crop_report
from gan.privacy.measure import compare, references
from gan.privacy.methods import METHODS, anonymize_crops, anonymizers, method_fids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=96)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", help="an export folder (default: random weights at c = 32, 32 px)")
    parser.add_argument("--downstream-copies", type=int, default=4, help="0: skip the downstream experiment")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        build_demo(data, variants_per_face=max(1, -(-args.faces // 6) - 1))
        model = args.model or export(Generator(GeneratorConfig(32), 32), Path(tmp) / "export", "floor", onnx=False)
        dataset = PreparedDataset(data)
        count = min(args.faces, len(dataset))
        batch = dataset.__getitems__(list(range(count)))
        generator = load_generator(model)
        print(f"{count} demo faces at 128 px; generator {generator.meta['architecture']}; torch 1 thread")

        started = time.perf_counter()
        crops = anonymize_crops(batch, anonymizers(generator, seed=0))
        anonymize_seconds = time.perf_counter() - started
        boxes = batch.box.numpy() * 128

        analyzer = FaceAnalyzer()
        started = time.perf_counter()
        refs = [references(analyzer, crops["original"][i], [boxes[i]]) for i in range(count)]
        per_method = {"original (reference, once per face)": time.perf_counter() - started}
        for name in METHODS[1:]:
            started = time.perf_counter()
            for i in range(count):
                compare(analyzer, refs[i], crops[name][i])
            per_method[name] = time.perf_counter() - started

        started = time.perf_counter()
        method_fids(crops, "onet")
        fid_seconds = time.perf_counter() - started

        print("\n| part | faces/s | ms per face |\n|---|---|---|")
        per_face = 1000 * anonymize_seconds / count
        print(f"| anonymize, all 5 methods | {count / anonymize_seconds:.1f} | {per_face:.1f} |")
        for name, seconds in per_method.items():
            print(f"| measure {name} | {count / seconds:.1f} | {1000 * seconds / count:.1f} |")
        measure_total = sum(per_method.values())
        per_face = 1000 * measure_total / count
        print(f"| measure, all methods (1 process) | {count / measure_total:.2f} | {per_face:.0f} |")
        print(f"| FID (onet), all methods | {count / fid_seconds:.1f} | {1000 * fid_seconds / count:.1f} |")

        print("\n| whole report (crop_report) | seconds | faces/s | projected 1,000 faces |\n|---|---|---|---|")
        for workers in args.workers:
            started = time.perf_counter()
            crop_report(model, data, num=count, workers=workers, progress=False)
            seconds = time.perf_counter() - started
            projected = 1000 * seconds / count / 60
            print(f"| {workers} worker(s) | {seconds:.1f} | {count / seconds:.2f} | {projected:.1f} min |")
        if args.downstream_copies:
            downstream_cost(model, Path(tmp), args.downstream_copies)


def downstream_cost(model, tmp: Path, copies: int) -> None:
    import json
    import shutil

    from data.demo import HERE as DEMO
    from data.trainable_detector import DlibHogTrainer
    from gan.privacy import downstream

    faces = json.loads((DEMO / "annotations.json").read_text())
    (tmp / "train").mkdir()
    table = {}
    for copy in range(copies):
        for name, entry in faces.items():
            shutil.copy(DEMO / "photos" / name, tmp / "train" / f"{copy}_{name}")
            table[f"{copy}_{name}"] = entry
    (tmp / "train.json").write_text(json.dumps(table))
    train = downstream.photo_set(tmp / "train", tmp / "train.json")
    val = downstream.photo_set(DEMO / "photos", DEMO / "annotations.json")
    generators = downstream.anonymizers(load_generator(model), seed=0)
    report = downstream.run(model, train, val, list(METHODS), DlibHogTrainer(), progress=False)
    print(f"\n| downstream, {len(train)} training photos, {len(val)} test photos | anonymise photos/s "
          "| train s (incl. anonymising) | detect ms/photo | AP@0.5 (tested on its own training photos: cost only) |"
          "\n|---|---|---|---|---|")
    for name, row in report["methods"].items():
        images = downstream.Anonymised(train, name, generators)
        started = time.perf_counter()
        for i in range(len(images)):
            images[i]
        rate = len(images) / (time.perf_counter() - started)
        print(f"| {name} | {rate:.1f} | {row['train_seconds']:.1f} | {1000 * row['detect_seconds'] / len(val):.0f} "
              f"| {100 * row['ap50']:.1f} |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
