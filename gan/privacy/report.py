"""The privacy report's files: ``report.json``, ``report.md``, ``tradeoff.png`` and the contact sheet."""

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from data.face_analysis import DETECTION_IOU, MIN_FACE_PIXELS, SAME_PERSON_DISTANCE, UPSAMPLE
from gan.privacy.methods import BLUR_SIGMA_FRACTION, METHODS, PIXELATE_CELLS

FORMAT = "safefakes-privacy-report"


def identity_name(identity) -> str:
    return "dlib" if identity == "dlib" else f"onnx:{Path(identity).name}"


def rules(mode: str, extractor: str | None, mmod: bool, identity="dlib") -> dict:
    if identity == "dlib":
        model = ("dlib_face_recognition_resnet_model_v1 descriptors of the original and the anonymised image, both "
                 "aligned with shape_predictor_5_face_landmarks on the same known box; euclidean distance")
        threshold = f"{SAME_PERSON_DISTANCE} (dlib's same-person threshold)"
    else:
        from data.identity import read_options

        net = read_options(identity)
        model = (f"{identity_name(identity)} embeddings ({net['alignment']} alignment from dlib's 5 landmarks on the "
                 f"same known box, {net['input_size']} px, {'L2-normalised, ' if net['l2_normalize'] else ''}"
                 "options in its JSON file); euclidean distance")
        threshold = f"{net['threshold']} (the network's same-person threshold, from its JSON file)"
    return {
        "identity": model,
        "re_identification": f"verification: distance to its own original < {threshold}",
        "rank1_identification": "identification: the nearest original face of the whole set (by identity distance) "
                                "is the anonymised face's own source",
        "detection": f"{'MMOD CNN' if mmod else 'HOG frontal-face'} detector, upsample {UPSAMPLE}; a face is "
                     f"detected when a detection overlaps its known box with IoU >= {DETECTION_IOU}",
        "landmark_error": "faces detected in both images: mean distance of the 5 landmarks found in each detection, "
                          "divided by the original's inter-ocular distance (between the eye-corner means)",
        "too_small": f"faces whose box is under {MIN_FACE_PIXELS} px on its shorter side are counted, not measured",
        "blur": f"Gaussian, sigma = box's longer side x {BLUR_SIGMA_FRACTION}",
        "pixelate": f"{PIXELATE_CELLS}x{PIXELATE_CELLS} mosaic of block means",
        "black_box": "box filled with 0",
        "generator": "the export through gan.anonymize.Anonymizer, exactly as python -m gan.anonymize writes it: the "
                     "face cropped the DeepPrivacy way, its box placed by the rule the export was trained with, "
                     "generated, resized (PIL bicubic) and pasted inside the box; z = 0, and z ~ N(0, 1) per face "
                     "from --seed",
        "realism": (f"FID ({extractor} features) of each method's crops against the original crops; numbers from "
                    "different extractors are not comparable" if extractor and mode == "crops" else
                    "not measured" + (" on whole photos" if mode == "photos" else "")),
    }


def export_info(model: str | Path, generator) -> dict:
    meta = generator.meta
    return {"path": str(model), "sha256": meta["sha256"], "images_seen": meta["images_seen"],
            "resolution": meta["resolution"], "architecture": meta["architecture"],
            "box_rounding": meta["conditioning"]["box_rounding"]}


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
        f"{report['too_small']} too small to measure; identity model: {report.get('identity', 'dlib')}.",
        "",
        f"| method | re-identified (verification) | rank-1 identified | identity distance | detected "
        f"| detected vs original | landmark error | FID ({extractor or '-'}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["methods"].items():
        lines.append(f"| {name} | {_pct(row['reid_rate'])} | {_pct(row.get('rank1_rate'))} | "
                     f"{_num(row['identity_distance'])} | "
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
