"""The privacy report's drivers and command line (``python -m gan.privacy``; the package docstring says what is
measured)."""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from data.detections import PHOTO_SUFFIXES, load_detections
from data.face_analysis import FaceAnalyzer
from data.identity import parse_identity
from data.record import DataError, collate
from data.sources import open_dataset
from gan.export import ExportError, load_generator
from gan.privacy.measure import measure_all, too_small
from gan.privacy.methods import METHODS, anonymize_crops, anonymize_photos, anonymizers, method_fids
from gan.privacy.report import FORMAT, contact_sheet, export_info, identity_name, markdown_table, rules, write_report


def crop_report(model: str | Path, data: str | Path, num: int = 500, split: str = "val", workers: int = 1,
                extractor: str | None = "onet", mmod: bool = False, seed: int = 0, batch_size: int = 64,
                device: str = "cpu", progress: bool = True, identity="dlib") -> tuple[dict, np.ndarray]:
    """The report on the first ``num`` face crops of a dataset; returns (report, contact sheet)."""
    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    started = time.perf_counter()
    generator = load_generator(model).to(device)
    methods = anonymizers(generator, seed, batch_size, device)
    dataset = open_dataset(data, split)  # type: ignore[arg-type]
    count = min(num, len(dataset))
    loader = DataLoader(Subset(dataset, range(count)), batch_size=batch_size, collate_fn=collate)
    parts, boxes = [], []
    for batch in tqdm(loader, desc="privacy: anonymize", disable=not progress, unit="batch"):
        parts.append(anonymize_crops(batch, methods))
        boxes += list(batch.box.numpy() * batch.image.shape[-1])
    crops = {name: np.concatenate([part[name] for part in parts]) for name in METHODS}
    anonymized_at = time.perf_counter()
    fids = method_fids(crops, extractor, device) if extractor else {}
    fid_at = time.perf_counter()
    jobs = ((crops["original"][i], {name: crops[name][i] for name in METHODS[1:]}, [boxes[i]]) for i in range(count))
    tallies, rank1 = measure_all(jobs, count, list(METHODS), workers, mmod, progress, identity)
    small = [i for i, box in enumerate(boxes) if too_small(box)]
    report = {
        "format": FORMAT, "version": 1, "mode": "crops", "export": export_info(model, generator),
        "data": str(data), "split": split, "faces": count, "too_small": len(small), "too_small_faces": small,
        "extractor": extractor, "identity": identity_name(identity), "rules": rules("crops", extractor, mmod, identity),
        "methods": {name: {**tallies[name].summary(tallies["original"]), "rank1_rate": rank1[name],
                           "fid": fids.get(name)} for name in METHODS},
        "seconds": {"anonymize": round(anonymized_at - started, 2), "fid": round(fid_at - anonymized_at, 2),
                    "measure": round(time.perf_counter() - fid_at, 2), "total": round(time.perf_counter() - started,
                                                                                      2)},
        "workers": workers,
    }
    return report, contact_sheet(crops)


def photo_report(model: str | Path, photos: str | Path, detections: str | Path, workers: int = 1, mmod: bool = False,
                 seed: int = 0, device: str = "cpu", progress: bool = True, identity="dlib") -> dict:
    """The report on whole photos with the faces of a detections file (``data.detections``)."""
    started = time.perf_counter()
    folder = Path(photos)
    if not folder.is_dir():
        raise DataError("missing_dataset", str(folder), "no such directory")
    table = load_detections(detections)
    generator = load_generator(model).to(device)
    methods = anonymizers(generator, seed, device=device)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    named = {p.relative_to(folder).as_posix(): p for p in files}
    unlisted = [name for name in named if name not in table and Path(name).name not in table]
    missing = [name for name in table if name not in named and not any(p.name == name for p in files)]

    def jobs():
        for key, (name, path) in enumerate(named.items()):
            faces = table.get(name, table.get(Path(name).name))
            if faces is None:
                continue
            with Image.open(path) as opened:
                photo = np.asarray(opened.convert("RGB"))
            boxes = [face.box for face in faces]
            keypoints = [face.keypoints for face in faces]
            (anonymized,) = anonymize_photos([photo], [boxes], [keypoints], methods, [key])
            yield photo, anonymized, boxes

    measured = len(named) - len(unlisted)
    if measured == 0:
        raise DataError("no_detections_entry", str(detections), f"none of the photos in {folder} has an entry")
    tallies, rank1 = measure_all(jobs(), measured, list(METHODS), workers, mmod, progress, identity)
    return {
        "format": FORMAT, "version": 1, "mode": "photos", "export": export_info(model, generator),
        "data": str(folder), "detections": str(detections), "photos": measured,
        "faces": tallies["original"].faces + tallies["original"].too_small,
        "too_small": tallies["original"].too_small,
        "photos_without_entry": unlisted, "entries_without_photo": missing,
        "extractor": None, "identity": identity_name(identity), "rules": rules("photos", None, mmod, identity),
        "methods": {name: {**tallies[name].summary(tallies["original"]), "rank1_rate": rank1[name]}
                    for name in METHODS},
        "seconds": {"total": round(time.perf_counter() - started, 2)}, "workers": workers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an export folder (gan.export, or the end of train.py)")
    parser.add_argument("--data", help="face crops: a prepared folder, the FDF release or DeepPrivacy's layout")
    parser.add_argument("--split", choices=["train", "val"], default="val")
    parser.add_argument("--num", type=int, default=500, help="the first N faces of --data")
    parser.add_argument("--photos", help="whole photos instead of crops (with --detections)")
    parser.add_argument("--detections", help="JSON of the faces in --photos (the gan.anonymize format)")
    parser.add_argument("--report", default="reports/privacy", help="output folder")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes measuring with dlib")
    parser.add_argument("--extractor", default="onet", help="FID extractor (onet, inception, torchscript) or none")
    parser.add_argument("--mmod", action="store_true", help="detect with dlib's MMOD CNN instead of HOG (slower)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random latents")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="device of the generator and the FID extractor")
    parser.add_argument("--identity", default="dlib",
                        help="identity model: dlib (128-D descriptor, same person < 0.6) or onnx:PATH (a face-"
                             "embedding network, its options in PATH.json: threshold, alignment, normalisation)")
    args = parser.parse_args(argv)
    if (args.data is None) == (args.photos is None) or (args.photos is not None) != (args.detections is not None):
        parser.error("give either --data, or --photos with --detections")
    extractor = None if args.extractor == "none" else args.extractor
    try:
        identity = parse_identity(args.identity)
        FaceAnalyzer(args.mmod, identity)  # fails early, with the pip command, if dlib or its models are missing
        if args.data is not None:
            report, contact = crop_report(args.model, args.data, args.num, args.split, args.workers, extractor,
                                          args.mmod, args.seed, args.batch_size, args.device, identity=identity)
        else:
            report = photo_report(args.model, args.photos, args.detections, args.workers, args.mmod, args.seed,
                                  args.device, identity=identity)
            contact = None
    except (DataError, ExportError, FileNotFoundError, ImportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = Path(args.report)
    write_report(report, out, contact)
    print(markdown_table(report))
    print(f"wrote {out / 'report.json'}, report.md, tradeoff.png" + (", contact.png" if contact is not None else ""))
    return 0

