"""Anonymize photos with an exported generator: every detected face is replaced (the command line).

    python -m gan.anonymize --model checkpoints/demo/export --input photo.jpg [more.jpg ...] --output out/
        [--detections faces.json] [--backend torch|onnx] [--seed 7] [--blur-below 0] [--device cpu]

Faces come from face-alignment (boxes + 7 keypoints; its weights must be in ``$TORCH_HOME/hub/checkpoints``)
or from ``--detections`` (``data.detections``: per photo file name a list of ``{"box": [...], "keypoints": [...]}``,
keypoints optional, null = absent). Each face is cropped the DeepPrivacy way, resized to the model's resolution,
conditioned by the box rule it was trained with, generated (z = 0 unless ``--seed``), resized back and pasted inside
its box only (``gan.anonymize.anonymizer``). A face without keypoints is generated
with all keypoints absent; with ``--blur-below N`` a face whose box is under N pixels is blurred instead.
No face is left as it was: the report counts how many took each path.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from data.detections import FaceAlignmentDetector, load_detections
from data.keypoints import NUM_KEYPOINTS
from data.record import DataError
from gan.anonymize.anonymizer import Anonymizer, Report


def save_like(result: np.ndarray, path: Path, source_format: str | None, source: Image.Image, quality: int) -> None:
    """Save in the input's format: JPEG at ``quality`` with the input's chroma subsampling, PNG and WebP losslessly.
    No metadata is copied: EXIF (camera, time, GPS position) never reaches the anonymised file."""
    image = Image.fromarray(result)
    if source_format == "JPEG":
        from PIL import JpegImagePlugin

        sampling = JpegImagePlugin.get_sampling(source)
        image.save(path, "JPEG", quality=quality, subsampling=sampling if sampling != -1 else 0)
    elif source_format == "WEBP":
        image.save(path, "WEBP", lossless=True)
    else:
        image.save(path, source_format or None)  # PNG, BMP, TIFF: lossless


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an export folder (gan.export)")
    parser.add_argument("--input", required=True, nargs="+", help="photos")
    parser.add_argument("--output", required=True, help="folder for the anonymized photos and report.json")
    parser.add_argument("--detections", help="JSON of faces per photo (file name -> list of {box, keypoints})")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--seed", type=int, help="random latents from this seed (default: z = 0)")
    parser.add_argument("--blur-below", type=int, default=0, help="blur instead of generating faces under N px")
    parser.add_argument("--quality", type=int, default=95,
                        help="JPEG quality of the outputs (the input's format is kept)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="device for the torch backend and face-alignment")
    args = parser.parse_args(argv)
    if not 1 <= args.quality <= 100:
        parser.error(f"--quality must lie in [1, 100], got {args.quality}")
    inputs = [Path(p) for p in args.input]
    missing = [str(p) for p in inputs if not p.is_file()]
    if missing:  # before any model or detector is loaded
        print(f"error: no such photo: {', '.join(missing)}", file=sys.stderr)
        return 1
    try:
        table = load_detections(args.detections) if args.detections else None
        if table is not None:
            unlisted = [p.name for p in inputs if p.name not in table]
            if unlisted:
                raise DataError("no_detections_entry", str(args.detections), f"no entry for {', '.join(unlisted)}")
        anonymizer = Anonymizer.from_export(args.model, args.backend, batch_size=args.batch_size, seed=args.seed,
                                            blur_below=args.blur_below, device=args.device)
        detector = None if table is not None else FaceAlignmentDetector(args.device, args.batch_size)
    except (DataError, FileNotFoundError, ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    output = Path(args.output)
    total = Report()
    for path in inputs:
        try:
            with Image.open(path) as opened:
                opened.load()
                source, source_format = opened, opened.format
                photo = np.asarray(opened.convert("RGB"))
        except (OSError, SyntaxError) as error:
            print(f"error: {path}: cannot read the photo: {error}", file=sys.stderr)
            return 1
        faces = table[path.name] if table is not None else detector(photo)
        boxes = np.array([face.box for face in faces]).reshape(-1, 4)
        points = np.array([face.keypoints for face in faces]).reshape(-1, NUM_KEYPOINTS, 2)
        result, report = anonymizer(photo, boxes, points)
        output.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        save_like(result, output / path.name, source_format, source, args.quality)
        total.generated += report.generated
        total.generated_without_keypoints += report.generated_without_keypoints
        total.blurred += report.blurred
        total.per_image[path.name] = {"faces": len(faces), "generated": report.generated, "blurred": report.blurred}
    summary = {"generated": total.generated, "generated_without_keypoints": total.generated_without_keypoints,
               "blurred": total.blurred, "images": total.per_image}
    (output / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "images"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
