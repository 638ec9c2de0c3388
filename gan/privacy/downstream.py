"""The Safe Fakes experiment: train a face detector on anonymised photos, test it on real ones.

    python -m gan.privacy.downstream --model EXPORT --train PHOTOS --train-detections F.json
        --val PHOTOS --val-detections F.json [--methods original blur ...] [--report reports/downstream]
    python -m gan.privacy.downstream --model EXPORT --wider ROOT [--wider-detections F.json] [--train-limit N]

For every method of the privacy report's panel (``original``, ``blur``, ``pixelate``, ``black_box``,
``generator_z0``, ``generator_random``) every face of the training photos is anonymised as the method does it
(``gan.privacy.methods``: the export through the anonymizer), a detector is trained on them
(``data.trainable_detector``: dlib's HOG + linear SVM by default, ``--detector-window``, ``--C``, ``--upsample``),
and it is evaluated on the **original** validation photos: AP at IoU 0.5 and AP@[.5:.95] by pycocotools' COCOeval
(maximum 1000 detections per photo). Klomp et al. (FG 2021) asked it of DeepPrivacy on WIDER FACE (91.0 -> 88.3
mAP with a DSFD detector); here the question is asked with a detector a CPU trains in seconds.

Faces the detector cannot learn or find (shorter side under ``min_face`` = window / 2^upsample) and WIDER FACE's
invalid or heavily occluded faces are **ignored**: anonymised like every face, shown to the trainer as regions to
ignore, and in the evaluation neither hits nor misses (COCO's crowd rule); both are counted. Faces too small for a
method (pixelate: under its cell count) are anonymised anyway and counted. Faces without keypoints (WIDER FACE has
none) are generated with every keypoint absent, and counted.

Output: ``downstream.json`` (AP per method, AP relative to ``original``, training and detection time, the counts,
the export's sha256, the detector's options), ``downstream.md`` and ``downstream.png`` (a bar chart).
"""

import argparse
import contextlib
import io
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from data.detections import PHOTO_SUFFIXES, load_detections, lookup
from data.keypoints import NUM_KEYPOINTS
from data.record import DataError
from data.trainable_detector import DetectorTrainer, DlibHogTrainer
from data.wider import Annotated, read_wider
from gan.export import ExportError, load_generator
from gan.privacy.methods import CLASSIC, METHODS, PIXELATE_CELLS, anonymizers, obscure
from gan.privacy.report import export_info

FORMAT = "safefakes-downstream-report"


# ------------------------------------------------------------------------------------------------------ data


def photo_set(folder: str | Path, detections: str | Path) -> list[Annotated]:
    """A photo folder (walked recursively) with its detections file: every photo needs an entry, every entry a
    photo; keypoints kept where given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("missing_dataset", str(folder), "no such directory")
    table = load_detections(detections)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    relatives = [p.relative_to(folder).as_posix() for p in files]
    names: dict[str, list[str]] = {}
    for relative in relatives:
        names.setdefault(Path(relative).name, []).append(relative)
    out, used = [], set()
    for path, relative in zip(files, relatives, strict=True):
        faces = lookup(table, relative, names, str(detections))
        if faces is None:
            raise DataError("no_detections_entry", str(detections), f"no entry for {relative} (in {folder})")
        used.add(relative if relative in table else Path(relative).name)
        boxes = np.array([f.box for f in faces], dtype=np.float64).reshape(-1, 4)
        keypoints = np.array([f.keypoints for f in faces], dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 2)
        out.append(Annotated(path, relative, boxes, np.zeros(len(boxes), dtype=bool), keypoints))
    missing = sorted(set(table) - used)
    if missing:
        raise DataError("missing_photo", str(folder / missing[0]),
                        f"listed in {detections} but not there" + (f" (and {len(missing) - 1} more)"
                                                                    if len(missing) > 1 else ""))
    if not out:
        raise DataError("empty_dataset", str(folder), "holds no photo")
    return out


def with_keypoints(photos: list[Annotated], detections: str | Path | None) -> list[Annotated]:
    """WIDER FACE photos with the keypoints of a detections file where it has the same face (IoU >= 0.5)."""
    if detections is None:
        return photos
    from data.face_analysis import box_iou

    table = load_detections(detections)
    for photo in photos:
        faces = table.get(photo.relative, [])
        points = np.full((len(photo.boxes), NUM_KEYPOINTS, 2), -1.0)
        for i, box in enumerate(photo.boxes):
            best = max(faces, key=lambda f: box_iou(f.box, box), default=None)
            if best is not None and box_iou(best.box, box) >= 0.5:
                points[i] = best.keypoints
        photo.keypoints = points
    return photos


def read_photo(photo: Annotated) -> np.ndarray:
    try:
        with Image.open(photo.path) as opened:
            return np.asarray(opened.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError("unreadable_photo", str(photo.path), str(error)) from None


def short_side(boxes: np.ndarray) -> np.ndarray:
    return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) if len(boxes) else np.zeros(0)


class Anonymised:
    """The training photos as ``method`` leaves them, made when the trainer asks for each (a lazy sequence: a
    dataset is never held twice in memory); the generator's latents are seeded by the photo's index."""

    def __init__(self, photos: list[Annotated], method: str, generators: dict) -> None:
        self.photos, self.method, self.generators = photos, method, generators

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> np.ndarray:
        photo = self.photos[index]
        image = read_photo(photo)
        if self.method == "original" or not len(photo.boxes):
            return image
        if self.method in CLASSIC:
            return obscure(image, photo.boxes, self.method)
        result, _ = self.generators[self.method].many([image], [photo.boxes], [photo.keypoints], [index])[0]
        return result


# ----------------------------------------------------------------------------------------------- evaluation


def average_precision(photos: list[Annotated], ignored: list[np.ndarray],
                      predictions: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """AP@0.5 and AP@[.5:.95] of ``predictions`` (boxes, scores per photo) against the photos' faces, by
    pycocotools' COCOeval; ``ignored`` faces are COCO crowd regions (neither hits nor misses)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, (photo, ignore, (boxes, scores)) in enumerate(zip(photos, ignored, predictions, strict=True)):
        images.append({"id": image_id, "file_name": photo.relative})
        for box, crowd in zip(photo.boxes, ignore, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h,
                                "iscrowd": int(crowd), "ignore": int(crowd)})
        for box, score in zip(boxes, scores, strict=True):
            results.append({"image_id": image_id, "category_id": 1, "score": float(score),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
    counted = sum(1 for a in annotations if not a["iscrowd"])
    if counted == 0:
        raise DataError("no_validation_faces", photos[0].path.parent.as_posix() if photos else "validation set",
                        "no face to evaluate on: every validation face is ignored or too small for the detector")
    if not results:
        return {"ap50": 0.0, "ap": 0.0, "detections": 0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.params.maxDets = [10, 100, 1000]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    ap, ap50 = (max(float(v), 0.0) for v in evaluation.stats[:2])
    return {"ap50": ap50, "ap": ap, "detections": len(results)}


# ----------------------------------------------------------------------------------------------- experiment


def ignore_masks(photos: list[Annotated], min_face: float) -> tuple[list[np.ndarray], int, int]:
    """Per photo, the faces to ignore; and how many were flagged by the dataset and how many are too small."""
    masks, flagged, small = [], 0, 0
    for photo in photos:
        tiny = short_side(photo.boxes) < min_face
        flags = photo.ignore if len(photo.ignore) == len(photo.boxes) else np.zeros(len(photo.boxes), dtype=bool)
        masks.append(flags | tiny)
        flagged += int(flags.sum())
        small += int((tiny & ~flags).sum())
    return masks, flagged, small


def set_counts(photos: list[Annotated], ignored: list[np.ndarray], flagged: int, small: int) -> dict:
    faces = sum(len(p.boxes) for p in photos)
    without = sum(len(p.boxes) if p.keypoints is None else int((p.keypoints < 0).all(axis=(1, 2)).sum())
                  for p in photos)
    return {"photos": len(photos), "faces": faces, "faces_used": faces - flagged - small,
            "ignored_by_dataset": flagged, "too_small_for_detector": small,
            "without_keypoints": without, "too_small_for_pixelate": int(sum((short_side(p.boxes) < PIXELATE_CELLS)
                                                                            .sum() for p in photos))}


def check_methods(methods: list[str], model) -> None:
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; the panel is {list(METHODS)}")
    if model is None and any(m.startswith("generator") for m in methods):
        raise ValueError("--model is needed for the generator methods (or leave them out with --methods)")


def run(model: str | Path | None, train: list[Annotated], val: list[Annotated], methods: list[str],
        trainer: DetectorTrainer, seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """The experiment; returns the report (``downstream.json``)."""
    check_methods(methods, model)
    generator = load_generator(model).to(device) if model is not None else None
    generators = anonymizers(generator, seed, device=device) if generator is not None else {}
    train_ignored, train_flagged, train_small = ignore_masks(train, trainer.min_face)
    val_ignored, val_flagged, val_small = ignore_masks(val, trainer.min_face)
    if sum(int((~m).sum()) for m in train_ignored) == 0:
        raise DataError("no_training_faces", str(train[0].path.parent), "no face to learn from: the training "
                        f"photos have no face of at least {trainer.min_face:g} px that is not ignored")
    originals = [read_photo(p) for p in val]
    train_counts = set_counts(train, train_ignored, train_flagged, train_small)
    rows = {}
    for method in tqdm(methods, desc="downstream: train + evaluate", unit="method", disable=not progress):
        images = Anonymised(train, method, generators)
        started = time.perf_counter()
        detector = trainer.train(images, [p.boxes for p in train], train_ignored)
        trained = time.perf_counter()
        predictions = [detector.detect(image) for image in originals]
        detected = time.perf_counter()
        rows[method] = {**average_precision(val, val_ignored, predictions),
                        "train_seconds": round(trained - started, 2), "detect_seconds": round(detected - trained, 2)}
        if method in generators:  # every training face is generated; those without keypoints with all absent
            rows[method]["generated_without_keypoints"] = train_counts["without_keypoints"]
    base = rows.get("original")
    for row in rows.values():
        for key in ("ap50", "ap"):
            row[f"{key}_vs_original"] = row[key] / base[key] if base and base[key] > 0 else None
    return {
        "format": FORMAT, "version": 1,
        "export": export_info(model, generator) if generator is not None else None,
        "detector": {"name": trainer.name, **{k: v for k, v in asdict(trainer).items() if k != "name"},
                     "min_face": trainer.min_face},
        "evaluation": "pycocotools COCOeval (bbox, one class, maxDets 1000): AP@0.5 and AP@[.5:.95] on the original "
                      "validation photos; ignored faces are crowd regions",
        "train": train_counts,
        "val": set_counts(val, val_ignored, val_flagged, val_small),
        "methods": rows,
    }


# ------------------------------------------------------------------------------------------------- files


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def markdown(report: dict) -> str:
    d, t, v = report["detector"], report["train"], report["val"]
    source = f"`{report['export']['path']}` ({report['export']['images_seen']} images seen)" if report["export"] \
        else "no export"
    lines = [
        f"Downstream detector ({d['name']}, window {d['window']} px, C = {d['C']}, upsample {d['upsample']}) trained "
        f"on {t['photos']} anonymised photos ({t['faces_used']} faces used, {t['too_small_for_detector']} too small, "
        f"{t['ignored_by_dataset']} ignored by the dataset), tested on {v['photos']} original photos "
        f"({v['faces_used']} faces); generator: {source}.",
        "",
        "| method | AP@0.5 | AP@[.5:.95] | AP@0.5 vs original | train s |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["methods"].items():
        lines.append(f"| {name} | {100 * row['ap50']:.1f} | {100 * row['ap']:.1f} | {_pct(row['ap50_vs_original'])} "
                     f"| {row['train_seconds']:.1f} |")
    return "\n".join(lines + ["", report["evaluation"], ""])


def bar_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = list(report["methods"])
    ap50 = [100 * report["methods"][n]["ap50"] for n in names]
    ap = [100 * report["methods"][n]["ap"] for n in names]
    x = np.arange(len(names))
    figure, axes = plt.subplots(figsize=(6.5, 3.8), dpi=120)
    axes.bar(x - 0.2, ap50, 0.4, label="AP@0.5")
    axes.bar(x + 0.2, ap, 0.4, label="AP@[.5:.95]")
    axes.set_xticks(x, names, rotation=20, ha="right")
    axes.set(ylabel="AP on original photos (%)", ylim=(0, 105),
             title=f"detector trained on anonymised photos ({report['train']['photos']} train, "
                   f"{report['val']['photos']} val)")
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "downstream.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "downstream.md").write_text(markdown(report))
    bar_chart(report, out / "downstream.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an export folder (needed by the generator methods)")
    parser.add_argument("--train", help="training photos (a folder) ...")
    parser.add_argument("--train-detections", help="... and their faces (data.detections)")
    parser.add_argument("--val", help="validation photos (a folder) ...")
    parser.add_argument("--val-detections", help="... and their faces")
    parser.add_argument("--wider", help="WIDER FACE's root instead (WIDER_train, WIDER_val, wider_face_split)")
    parser.add_argument("--wider-detections", help="keypoints for WIDER FACE's faces (a detections file keyed by "
                        "its image paths); without it faces are generated with every keypoint absent")
    parser.add_argument("--train-limit", type=int, help="the first N training photos")
    parser.add_argument("--val-limit", type=int, help="the first N validation photos")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=f"of {', '.join(METHODS)}")
    parser.add_argument("--detector-window", type=int, default=40, help="HOG window side in pixels")
    parser.add_argument("--C", type=float, default=5.0, help="the SVM's C")
    parser.add_argument("--upsample", type=int, default=1, help="x2 upsamplings to find faces under the window")
    parser.add_argument("--seed", type=int, default=0, help="seed of generator_random's latents")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--report", default="reports/downstream", help="output folder")
    args = parser.parse_args(argv)
    folders = (args.train, args.train_detections, args.val, args.val_detections)
    if (args.wider is None) == all(f is None for f in folders) or (args.wider is None and None in folders):
        parser.error("give --train, --train-detections, --val and --val-detections, or --wider")
    try:
        check_methods(args.methods, args.model)  # before any photo is read
        trainer = DlibHogTrainer(args.detector_window, args.C, args.upsample)
        if args.wider is not None:
            train = with_keypoints(read_wider(args.wider, "train"), args.wider_detections)
            val = with_keypoints(read_wider(args.wider, "val"), args.wider_detections)
        else:
            train, val = photo_set(args.train, args.train_detections), photo_set(args.val, args.val_detections)
        train, val = train[: args.train_limit], val[: args.val_limit]
        report = run(args.model, train, val, args.methods, trainer, args.seed, args.device, sys.stderr.isatty())
    except (DataError, ExportError, FileNotFoundError, ImportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = Path(args.report)
    write(report, out)
    print(markdown(report))
    print(f"wrote {out / 'downstream.json'}, downstream.md, downstream.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
