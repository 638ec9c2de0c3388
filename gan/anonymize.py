"""Anonymize photos with an exported generator: every detected face is replaced.

    python -m gan.anonymize --model checkpoints/demo/export --input photo.jpg [more.jpg ...] --output out/
        [--detections faces.json] [--backend torch|onnx] [--seed 7] [--blur-below 0] [--device cpu]

Faces come from face-alignment (boxes + 7 keypoints; its weights must be in ``$TORCH_HOME/hub/checkpoints``)
or from ``--detections`` (``data.detections``: per photo file name a list of ``{"box": [...], "keypoints": [...]}``,
keypoints optional, null = absent). Each face is cropped the DeepPrivacy way, resized to the model's resolution, generated
(z = 0 unless ``--seed``), resized back and pasted inside its box only. A face without keypoints is generated
with all keypoints absent; with ``--blur-below N`` a face whose box is under N pixels is blurred instead.
No face is left as it was: the report counts how many took each path.
"""

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.crop import crop_face, crop_window
from data.detections import FaceAlignmentDetector, load_detections, no_keypoints
from data.keypoints import NUM_KEYPOINTS
from data.obscure import blur, pixel_box
from data.record import DataError, to_float_image, to_uint8_image
from gan.conditioning import condition_batch
from gan.export import ExportedGenerator, OnnxGenerator, load_generator, load_onnx_generator
from gan.seeding import fixed_latents


@dataclass
class Report:
    """How many faces took each path."""

    generated: int = 0
    generated_without_keypoints: int = 0
    blurred: int = 0
    per_image: dict = field(default_factory=dict)


class Anonymizer:
    """``Anonymizer.from_export(DIR)(image, boxes, keypoints=None) -> (anonymized image, Report)``.

    image: ``(H, W, 3)`` uint8 RGB; boxes: ``(N, 4)`` face boxes (x0, y0, x1, y1) in pixels; keypoints:
    ``(N, 7, 2)`` in pixels (negative or NaN = absent) or None.
    """

    def __init__(self, generator, batch_size: int = 16, seed: int | None = None, blur_below: int = 0,
                 device: str = "cpu") -> None:
        self.generator = generator
        self.resolution = generator.meta["resolution"]
        self.latent_shape = tuple(generator.meta["inputs"]["z"]["shape"][1:])
        self.batch_size, self.seed, self.blur_below, self.device = batch_size, seed, blur_below, device

    @classmethod
    def from_export(cls, folder: str | Path, backend: str = "torch", **kwargs) -> "Anonymizer":
        folder = Path(folder)
        if backend == "torch":
            generator: ExportedGenerator | OnnxGenerator = load_generator(folder).to(kwargs.get("device", "cpu"))
        elif backend == "onnx":
            generator = load_onnx_generator(folder)
        else:
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        return cls(generator, **kwargs)

    def __call__(self, image: np.ndarray, boxes, keypoints=None) -> tuple[np.ndarray, Report]:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if keypoints is None:
            keypoints = np.stack([no_keypoints()] * len(boxes)) if len(boxes) else np.zeros((0, NUM_KEYPOINTS, 2))
        keypoints = np.asarray(keypoints, dtype=np.float64).reshape(len(boxes), NUM_KEYPOINTS, 2)
        height, width = image.shape[:2]
        out = image.copy()
        report = Report()
        jobs = []
        for i, (box, points) in enumerate(zip(boxes, keypoints)):
            pixels = pixel_box(box, width, height)
            if pixels is None:
                continue  # the box lies outside the photo: no pixel of a face to replace
            if self.blur_below and max(box[2] - box[0], box[3] - box[1]) < self.blur_below:
                x0, y0, x1, y1 = pixels
                out[y0:y1, x0:x1] = blur(image, pixels, sigma_fraction=1 / 4)[y0:y1, x0:x1]
                report.blurred += 1
                continue
            present = np.isfinite(points).all(axis=1) & (points >= 0).all(axis=1)
            report.generated += 1
            report.generated_without_keypoints += int(not present.any())
            jobs.append((box, points, pixels, i))
        for start in range(0, len(jobs), self.batch_size):
            self._generate(image, out, jobs[start : start + self.batch_size])
        return out, report

    @torch.no_grad()
    def _generate(self, image: np.ndarray, out: np.ndarray, jobs) -> None:
        height, width = image.shape[:2]
        crops, norm_boxes, norm_points, windows = [], [], [], []
        for box, points, _, _ in jobs:
            window = crop_window(box, width, height)
            crop, nbox, npoints = crop_face(image, box, points, window, size=self.resolution)
            crops.append(crop), norm_boxes.append(nbox), norm_points.append(npoints), windows.append(window)
        image_t = to_float_image(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(self.device))
        box_t = torch.from_numpy(np.stack(norm_boxes)).to(self.device)
        keypoints = torch.from_numpy(np.stack(norm_points)).to(self.device)
        conditioned = condition_batch(image_t, box_t, keypoints, self.resolution)  # as in training
        shape = (len(jobs), *self.latent_shape)
        z = torch.zeros(shape) if self.seed is None else fixed_latents(shape, self.seed + jobs[0][3])
        fake = self.generator(conditioned.condition, conditioned.mask, conditioned.keypoints, z.to(self.device))
        faces = to_uint8_image(fake).permute(0, 2, 3, 1).cpu().numpy()
        for face, window, (_, _, pixels, _) in zip(faces, windows, jobs):
            wx0, wy0, wx1, wy1 = (int(v) for v in window)
            side = wx1 - wx0
            resized = np.asarray(Image.fromarray(face).resize((side, side), Image.Resampling.BICUBIC))
            x0, y0, x1, y1 = pixels
            out[y0:y1, x0:x1] = resized[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]


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
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the outputs (the input's format is kept)")
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
