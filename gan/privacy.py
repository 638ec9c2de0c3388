"""Privacy and utility report of a face anonymizer: the question of "Safe Fakes" (Klomp et al., FG 2021).

    python -m gan.privacy --model EXPORT_DIR --data DATASET [--num 500] [--report OUT_DIR] [--workers 2]
    python -m gan.privacy --model EXPORT_DIR --photos DIR --detections FILE.json [--report OUT_DIR]

Every face box is anonymised with each method of a fixed panel (``original`` as the control, ``blur``,
``pixelate``, ``black_box``, and the export with z = 0 and with random z) and each result is measured
against the original face with dlib (``data.face_analysis``):

- identity: the 128-D descriptor of the original and of the anonymised face, both on the same known box;
  the mean distance and the re-identification rate (distance < 0.6, dlib's same-person threshold);
- detectability: the HOG detector (upsampled once) on the image; a face counts as detected when a detection
  overlaps its known box with IoU >= 0.5; the rate, and the rate relative to ``original``;
- landmark fidelity: on faces detected in both images, the mean distance between the 5 landmarks found
  in each detection, divided by the original's inter-ocular distance;
- realism (face crops only): FID of each method's crops against the originals (the extractor is named).

A good anonymizer is detected like the original and re-identified never. Faces whose box is under
``MIN_FACE_PIXELS`` are counted as too small and not measured. The report folder gets ``report.json``
(every number, the rules, the counts, the export's sha256 and images seen), ``report.md``,
``tradeoff.png`` (re-identification vs detection, one point per method) and ``contact.png``.
"""

import argparse
import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from data.checksum import sha256_file
from data.detections import PHOTO_SUFFIXES, load_detections
from data.face_analysis import (
    DETECTION_IOU,
    MIN_FACE_PIXELS,
    SAME_PERSON_DISTANCE,
    UPSAMPLE,
    FaceAnalyzer,
    landmark_error,
    matching_detection,
)
from data.obscure import black_box, blur, pixel_box, pixelate
from data.record import DataError, FaceBatch, collate, to_float_image, to_uint8_image
from data.sources import open_dataset
from gan.conditioning import box_mask, condition_batch
from gan.export import ExportError, load_generator
from gan.fid import sample_latents

METHODS = ("original", "blur", "pixelate", "black_box", "generator_z0", "generator_random")
FORMAT = "safefakes-privacy-report"
BLUR_SIGMA_FRACTION = 1 / 8  # sigma of the Gaussian blur: an eighth of the box's longer side
PIXELATE_CELLS = 8


# --------------------------------------------------------------------------------------------- measurement


@dataclass
class Tally:
    """Sums over faces for one method; ``summary`` turns them into rates."""

    faces: int = 0  # faces measured
    too_small: int = 0  # faces under MIN_FACE_PIXELS, not measured
    distance_sum: float = 0.0
    reidentified: int = 0
    detected: int = 0
    landmark_error_sum: float = 0.0
    landmark_faces: int = 0  # faces detected in both images

    def __iadd__(self, other: "Tally") -> "Tally":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([float(getattr(self, f.name)) for f in fields(self)], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> "Tally":
        kinds = [f.type for f in fields(cls)]
        return cls(*(int(v) if kind in (int, "int") else float(v) for v, kind in zip(values.tolist(), kinds)))

    def summary(self, original: "Tally | None" = None) -> dict:
        """Rates (None where nothing was measured), with the counts they come from."""
        def rate(count, total):
            return count / total if total else None

        out = {
            "identity_distance": rate(self.distance_sum, self.faces),
            "reid_rate": rate(self.reidentified, self.faces),
            "detection_rate": rate(self.detected, self.faces),
            "landmark_error": rate(self.landmark_error_sum, self.landmark_faces),
            **asdict(self),
        }
        if original is not None:
            out["detection_rate_vs_original"] = rate(self.detected, original.detected)
        return out


@dataclass
class Reference:
    """What is measured once per original face: its descriptor, its detection and landmarks (None if undetected)."""

    box: tuple
    descriptor: np.ndarray | None  # None: too small to measure
    detection: tuple | None
    landmarks: np.ndarray | None


def too_small(box) -> bool:
    return min(box[2] - box[0], box[3] - box[1]) < MIN_FACE_PIXELS


def references(analyzer: FaceAnalyzer, original: np.ndarray, boxes) -> list[Reference]:
    """The original's side of every measurement, for each known box (xyxy pixels) of ``original``."""
    detections = analyzer.detect(original)
    out = []
    for box in boxes:
        box = tuple(float(v) for v in box)
        if too_small(box):
            out.append(Reference(box, None, None, None))
            continue
        match = matching_detection(detections, box)
        landmarks = analyzer.landmarks(original, match) if match else None
        out.append(Reference(box, analyzer.descriptor(original, box), match, landmarks))
    return out


def compare(analyzer: FaceAnalyzer, refs: list[Reference], image: np.ndarray) -> Tally:
    """Measure ``image`` (the original with its faces anonymised) against the references of its faces."""
    tally = Tally()
    detections = analyzer.detect(image)
    for ref in refs:
        if ref.descriptor is None:
            tally.too_small += 1
            continue
        tally.faces += 1
        distance = float(np.linalg.norm(ref.descriptor - analyzer.descriptor(image, ref.box)))
        tally.distance_sum += distance
        tally.reidentified += int(distance < SAME_PERSON_DISTANCE)
        match = matching_detection(detections, ref.box)
        tally.detected += int(match is not None)
        if match is not None and ref.landmarks is not None:
            tally.landmark_error_sum += landmark_error(ref.landmarks, analyzer.landmarks(image, match))
            tally.landmark_faces += 1
    return tally


def control(refs: list[Reference]) -> Tally:
    """The ``original`` row: the original compared with itself (the same descriptor and detections)."""
    tally = Tally()
    for ref in refs:
        if ref.descriptor is None:
            tally.too_small += 1
            continue
        tally.faces += 1
        tally.reidentified += 1
        if ref.detection is not None:
            tally.detected += 1
            tally.landmark_faces += int(ref.landmarks is not None)
    return tally


def measure(analyzer: FaceAnalyzer, original: np.ndarray, anonymized: dict[str, np.ndarray], boxes) -> dict[str, Tally]:
    """``{"original": control, method: Tally}`` for one image whose faces are at ``boxes`` (xyxy pixels)."""
    refs = references(analyzer, original, boxes)
    return {"original": control(refs), **{name: compare(analyzer, refs, image) for name, image in anonymized.items()}}


_ANALYZER: FaceAnalyzer | None = None  # one per worker process


def _start_worker(mmod: bool) -> None:
    global _ANALYZER
    torch.set_num_threads(1)
    _ANALYZER = FaceAnalyzer(mmod)


def _measure_job(job) -> dict[str, Tally]:
    original, anonymized, boxes = job
    return measure(_ANALYZER, original, anonymized, boxes)


def measure_all(jobs, count: int, workers: int, mmod: bool, progress: bool) -> dict[str, Tally]:
    """Sum ``measure`` over ``jobs`` (original, {method: image}, boxes), in ``workers`` processes."""
    totals = {name: Tally() for name in METHODS}
    bar = tqdm(total=count, desc="privacy: identity, detection, landmarks", disable=not progress, unit="image")
    if workers <= 1:
        _start_worker(mmod)
        results = map(_measure_job, jobs)
    else:  # dlib holds the GIL: processes, started clean (spawn), each with its own models
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_start_worker, initargs=(mmod,))
        results = pool.imap(_measure_job, jobs, chunksize=4)
    try:
        for result in results:
            for name, tally in result.items():
                totals[name] += tally
            bar.update()
    finally:
        bar.close()
        if workers > 1:
            pool.terminate()
    return totals


# ------------------------------------------------------------------------------------------- anonymization


@torch.no_grad()
def generate_in_crops(generate, resolution: int, crops: torch.Tensor, boxes: torch.Tensor, keypoints: torch.Tensor,
                      z: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Generated faces pasted into face crops, as the anonymizer pastes them into photos.

    ``crops`` ``(N, 3, S, S)`` uint8, ``boxes`` ``(N, 4)`` normalised, ``keypoints`` ``(N, 7, 2)``; the crops are
    conditioned at ``resolution`` exactly as in training, ``generate(condition, mask, keypoints, z)`` paints the
    face, which is resized to S (bicubic) and kept inside the box only. Returns ``(N, 3, S, S)`` uint8.
    """
    image = to_float_image(crops)
    conditioned = condition_batch(image, boxes, keypoints, resolution, alpha)
    fake = generate(conditioned.condition, conditioned.mask, conditioned.keypoints, z).float()
    size = crops.shape[-1]
    if fake.shape[-1] != size:
        fake = F.interpolate(fake, size=(size, size), mode="bicubic", align_corners=False)
    inside = box_mask(boxes, size).bool()
    return torch.where(inside, to_uint8_image(fake), crops)


def obscured(image: np.ndarray, boxes) -> dict[str, np.ndarray]:
    """The classic methods applied to every box (xyxy pixels) of ``image`` ``(H, W, 3)``."""
    height, width = image.shape[:2]
    out = {"blur": image, "pixelate": image, "black_box": image}
    for box in boxes:
        pixels = pixel_box(box, width, height)
        if pixels is None:
            continue
        out = {"blur": blur(out["blur"], pixels, BLUR_SIGMA_FRACTION),
               "pixelate": pixelate(out["pixelate"], pixels, PIXELATE_CELLS),
               "black_box": black_box(out["black_box"], pixels)}
    return out


def anonymize_crops(batch: FaceBatch, generator, seed: int, device: str = "cpu") -> dict[str, np.ndarray]:
    """Every method on a batch of face crops: ``{method: (N, S, S, 3) uint8}`` (``original`` included)."""
    crops = batch.image.to(device)
    size = crops.shape[-1]
    originals = crops.permute(0, 2, 3, 1).cpu().numpy()
    out = {name: [] for name in METHODS}
    for i, image in enumerate(originals):
        out["original"].append(image)
        for name, result in obscured(image, [batch.box[i].numpy() * size]).items():
            out[name].append(result)
    box, keypoints = batch.box.to(device), batch.keypoints.to(device)
    for name, z in (("generator_z0", "zero"), ("generator_random", "random")):
        latents = sample_latents(generator, batch, z, seed, device)
        faces = generate_in_crops(generator, generator.resolution, crops, box, keypoints, latents)
        out[name] = list(faces.permute(0, 2, 3, 1).cpu().numpy())
    return {name: np.stack(images) for name, images in out.items()}


# ------------------------------------------------------------------------------------------------ realism


def method_fids(crops: dict[str, np.ndarray], extractor_name: str, device: str = "cpu", batch: int = 64) -> dict:
    """FID of each method's crops against the originals (one set of real statistics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from gan.features import build_extractor

    metric = FrechetInceptionDistance(feature=build_extractor(extractor_name), reset_real_features=False).to(device)

    def batches(images):
        for start in range(0, len(images), batch):
            chunk = torch.from_numpy(images[start : start + batch]).permute(0, 3, 1, 2).to(device)
            yield to_float_image(chunk)

    for real in batches(crops["original"]):
        metric.update(real, real=True)
    fids = {}
    for name in METHODS:
        metric.reset()  # keeps the real statistics
        for fake in batches(crops[name]):
            metric.update(fake, real=False)
        fids[name] = float(metric.compute())
    return fids


# ------------------------------------------------------------------------------------------------- reports


def rules(mode: str, extractor: str | None, mmod: bool) -> dict:
    return {
        "identity": "dlib_face_recognition_resnet_model_v1 descriptors of the original and the anonymised image, "
                    "both aligned with shape_predictor_5_face_landmarks on the same known box; euclidean distance",
        "re_identification": f"distance < {SAME_PERSON_DISTANCE} (dlib's same-person threshold)",
        "detection": f"{'MMOD CNN' if mmod else 'HOG frontal-face'} detector, upsample {UPSAMPLE}; a face is "
                     f"detected when a detection overlaps its known box with IoU >= {DETECTION_IOU}",
        "landmark_error": "faces detected in both images: mean distance of the 5 landmarks found in each detection, "
                          "divided by the original's inter-ocular distance (between the eye-corner means)",
        "too_small": f"faces whose box is under {MIN_FACE_PIXELS} px on its shorter side are counted, not measured",
        "blur": f"Gaussian, sigma = box's longer side x {BLUR_SIGMA_FRACTION}",
        "pixelate": f"{PIXELATE_CELLS}x{PIXELATE_CELLS} mosaic of block means",
        "black_box": "box filled with 0",
        "generator": "the export, conditioned as in training (box blanked, 7 keypoints), its output resized to the "
                     "image and pasted inside the box; z = 0 and z ~ N(0, 1) from --seed",
        "realism": (f"FID ({extractor} features) of each method's crops against the original crops; numbers from "
                    "different extractors are not comparable" if extractor and mode == "crops" else
                    "not measured" + (" on whole photos" if mode == "photos" else "")),
    }


def export_info(model: str | Path, generator) -> dict:
    meta = generator.meta
    return {"path": str(model), "sha256": meta["sha256"], "images_seen": meta["images_seen"],
            "resolution": meta["resolution"], "architecture": meta["architecture"]}


def write_report(report: dict, out: Path, contact: np.ndarray | None) -> None:
    """report.json, report.md, tradeoff.png and (for crops) contact.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown_table(report))
    plot_tradeoff(report, out / "tradeoff.png")
    if contact is not None:
        Image.fromarray(contact).save(out / "contact.png")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(report: dict) -> str:
    extractor = report.get("extractor")
    lines = [
        f"Privacy and utility of `{report['export']['path']}` ({report['export']['images_seen']} images seen, "
        f"{report['export']['resolution']} px) on {report['faces']} faces of `{report['data']}`; "
        f"{report['too_small']} too small to measure.",
        "",
        f"| method | re-identified | identity distance | detected | detected vs original | landmark error "
        f"| FID ({extractor or '-'}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in report["methods"].items():
        lines.append(f"| {name} | {_pct(row['reid_rate'])} | {_num(row['identity_distance'])} | "
                     f"{_pct(row['detection_rate'])} | {_pct(row.get('detection_rate_vs_original'))} | "
                     f"{_num(row['landmark_error'])} | {_num(row.get('fid'), 2)} |")
    lines += ["", "Rules:", *[f"- {key}: {text}" for key, text in report["rules"].items()], ""]
    return "\n".join(lines)


def plot_tradeoff(report: dict, path: Path) -> None:
    """Re-identification rate against detection rate, one labelled point per method."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    placed: dict[tuple[int, int], int] = {}  # labels of points that (nearly) coincide are stacked
    for name, row in report["methods"].items():
        if row["detection_rate"] is None:
            continue
        x, y = 100 * row["detection_rate"], 100 * row["reid_rate"]
        spot = (round(x / 4), round(y / 4))
        stacked = placed.get(spot, 0)
        placed[spot] = stacked + 1
        axes.scatter([x], [y], s=50)
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4 + 11 * stacked), fontsize=9)
    axes.set(xlim=(-5, 105), ylim=(-5, 105), xlabel="face still detected (%)  - utility",
             ylabel="person re-identified (%)  - privacy lost",
             title=f"{report['faces']} faces, {report['export']['images_seen']} images seen")
    axes.axvspan(50, 105, ymin=0, ymax=0.5, color="tab:green", alpha=0.07)
    axes.text(102, 2, "goal", ha="right", fontsize=8, color="tab:green")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def contact_sheet(crops: dict[str, np.ndarray], rows: int = 4, size: int = 96) -> np.ndarray:
    """A few faces (rows) under every method (columns), labelled."""
    count = min(rows, len(crops["original"]))
    header = 16
    sheet = Image.new("RGB", (size * len(METHODS), header + size * count), "white")
    draw = ImageDraw.Draw(sheet)
    for column, name in enumerate(METHODS):
        draw.text((column * size + 3, 2), name, fill="black")
        for row in range(count):
            face = Image.fromarray(crops[name][row]).resize((size, size), Image.Resampling.BILINEAR)
            sheet.paste(face, (column * size, header + row * size))
    return np.asarray(sheet)


# ------------------------------------------------------------------------------------------------- drivers


def crop_report(model: str | Path, data: str | Path, num: int = 500, split: str = "val", workers: int = 1,
                extractor: str | None = "onet", mmod: bool = False, seed: int = 0, batch_size: int = 64,
                device: str = "cpu", progress: bool = True) -> tuple[dict, np.ndarray]:
    """The report on the first ``num`` face crops of a dataset; returns (report, contact sheet)."""
    if num <= 0:
        raise ValueError(f"--num must be positive, got {num}")
    started = time.perf_counter()
    generator = load_generator(model).to(device)
    dataset = open_dataset(data, split)  # type: ignore[arg-type]
    count = min(num, len(dataset))
    loader = DataLoader(Subset(dataset, range(count)), batch_size=batch_size, collate_fn=collate)
    parts, boxes = [], []
    for batch in tqdm(loader, desc="privacy: anonymize", disable=not progress, unit="batch"):
        parts.append(anonymize_crops(batch, generator, seed, device))
        boxes += list(batch.box.numpy() * batch.image.shape[-1])
    crops = {name: np.concatenate([part[name] for part in parts]) for name in METHODS}
    anonymized_at = time.perf_counter()
    fids = method_fids(crops, extractor, device) if extractor else {}
    fid_at = time.perf_counter()
    jobs = ((crops["original"][i], {name: crops[name][i] for name in METHODS[1:]}, [boxes[i]]) for i in range(count))
    tallies = measure_all(jobs, count, workers, mmod, progress)
    small = [i for i, box in enumerate(boxes) if too_small(box)]
    report = {
        "format": FORMAT, "version": 1, "mode": "crops", "export": export_info(model, generator),
        "data": str(data), "split": split, "faces": count, "too_small": len(small), "too_small_faces": small,
        "extractor": extractor, "rules": rules("crops", extractor, mmod),
        "methods": {name: {**tallies[name].summary(tallies["original"]), "fid": fids.get(name)} for name in METHODS},
        "seconds": {"anonymize": round(anonymized_at - started, 2), "fid": round(fid_at - anonymized_at, 2),
                    "measure": round(time.perf_counter() - fid_at, 2), "total": round(time.perf_counter() - started, 2)},
        "workers": workers,
    }
    return report, contact_sheet(crops)


def photo_report(model: str | Path, photos: str | Path, detections: str | Path, workers: int = 1, mmod: bool = False,
                 seed: int = 0, device: str = "cpu", progress: bool = True) -> dict:
    """The report on whole photos with the faces of a detections file (``data.detections``)."""
    from gan.anonymize import Anonymizer

    started = time.perf_counter()
    folder = Path(photos)
    if not folder.is_dir():
        raise DataError("missing_dataset", str(folder), "no such directory")
    table = load_detections(detections)
    generator = load_generator(model).to(device)
    anonymizers = {"generator_z0": Anonymizer(generator, device=device),
                   "generator_random": Anonymizer(generator, seed=seed, device=device)}
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    named = {p.relative_to(folder).as_posix(): p for p in files}
    unlisted = [name for name in named if name not in table and Path(name).name not in table]
    missing = [name for name in table if name not in named and not any(p.name == name for p in files)]

    def jobs():
        for name, path in named.items():
            faces = table.get(name, table.get(Path(name).name))
            if faces is None:
                continue
            with Image.open(path) as opened:
                photo = np.asarray(opened.convert("RGB"))
            boxes = [face.box for face in faces]
            keypoints = np.array([face.keypoints for face in faces]).reshape(len(faces), -1, 2)
            anonymized = obscured(photo, boxes)
            for method, anonymizer in anonymizers.items():
                anonymized[method] = anonymizer(photo, np.array(boxes).reshape(-1, 4), keypoints)[0]
            yield photo, anonymized, boxes

    measured = len(named) - len(unlisted)
    if measured == 0:
        raise DataError("no_detections_entry", str(detections), f"none of the photos in {folder} has an entry")
    tallies = measure_all(jobs(), measured, workers, mmod, progress)
    return {
        "format": FORMAT, "version": 1, "mode": "photos", "export": export_info(model, generator),
        "data": str(folder), "detections": str(detections), "photos": measured,
        "faces": tallies["original"].faces + tallies["original"].too_small,
        "too_small": tallies["original"].too_small,
        "photos_without_entry": unlisted, "entries_without_photo": missing,
        "extractor": None, "rules": rules("photos", None, mmod),
        "methods": {name: tallies[name].summary(tallies["original"]) for name in METHODS},
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
    args = parser.parse_args(argv)
    if (args.data is None) == (args.photos is None) or (args.photos is not None) != (args.detections is not None):
        parser.error("give either --data, or --photos with --detections")
    extractor = None if args.extractor == "none" else args.extractor
    try:
        FaceAnalyzer(args.mmod)  # fails early, with the pip command, if dlib or its models are missing
        if args.data is not None:
            report, contact = crop_report(args.model, args.data, args.num, args.split, args.workers, extractor,
                                          args.mmod, args.seed, args.batch_size, args.device)
        else:
            report = photo_report(args.model, args.photos, args.detections, args.workers, args.mmod, args.seed,
                                  args.device)
            contact = None
    except (DataError, ExportError, FileNotFoundError, ImportError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out = Path(args.report)
    write_report(report, out, contact)
    print(markdown_table(report))
    print(f"wrote {out / 'report.json'}, report.md, tradeoff.png" + (", contact.png" if contact is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
