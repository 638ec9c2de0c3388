"""The bundled demo set: six public-domain portraits (see LICENSES), annotated by ``annotate.py``.

``build_demo(out)`` crops every face the DeepPrivacy way and expands the six faces to a few hundred
samples with jittered crop windows, mirror images (keypoint labels swapped) and colour jitter, then
writes them in the prepared format. The result is the same on every machine (fixed seed).
"""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.augment import flip_annotations
from data.crop import crop_face, crop_window
from data.prepared import write_prepared
from data.record import make_record

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "prepared"


def _jitter_colours(image: np.ndarray, rng: np.random.Generator, strength: float = 0.15) -> np.ndarray:
    x = image.astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * rng.uniform(1 - strength, 1 + strength)  # saturation
    x = x.mean() + (x - x.mean()) * rng.uniform(1 - strength, 1 + strength)  # contrast
    x = x * rng.uniform(1 - strength, 1 + strength)  # brightness
    return x.clip(0, 255).round().astype(np.uint8)


def demo_records(variants_per_face: int = 48, seed: int = 0):
    """Yield the demo ``FaceRecord``s: first every photo's DeepPrivacy crop, then round after round of variants,
    one per photo each, so that the first samples (the fixed validation faces) show every face."""
    per_photo = list(_photo_records(variants_per_face, seed))
    order = [record for group in zip(*per_photo, strict=True) for record in group]
    for index, (image, box, keypoints, source) in enumerate(order):
        yield make_record(image, box, keypoints, index, source)


def _photo_records(variants_per_face: int, seed: int):
    """Per photo, the list of its crop and variants as (image, box, keypoints, source)."""
    annotations = json.loads((HERE / "annotations.json").read_text())
    rng = np.random.default_rng(seed)
    for name, faces in annotations.items():
        (entry,) = faces
        photo = np.asarray(Image.open(HERE / "photos" / name).convert("RGB"))
        height, width = photo.shape[:2]
        box, keypoints = np.array(entry["box"]), np.array(entry["keypoints"])
        base = crop_window(box, width, height)
        records = []
        for variant in range(variants_per_face + 1):
            window = base
            if variant:
                side = base[2] - base[0]
                scale = rng.uniform(0.9, 1.15)
                shift = rng.uniform(-0.06, 0.06, size=2) * side
                centre = (base[:2] + base[2:]) / 2 + shift
                new_side = side * scale
                window = np.round(np.concatenate([centre - new_side / 2, centre + new_side / 2])).astype(np.int64)
                window[2:] = window[:2] + (window[2] - window[0])  # keep it square after rounding
            image, norm_box, norm_points = crop_face(photo, box, keypoints, window)
            if variant and rng.random() < 0.5:
                image = np.ascontiguousarray(image[:, ::-1])
                flipped_box, flipped_points = flip_annotations(
                    torch.from_numpy(norm_box)[None], torch.from_numpy(norm_points)[None], torch.tensor([True])
                )
                norm_box, norm_points = flipped_box[0].numpy(), flipped_points[0].numpy()
            if variant:
                image = _jitter_colours(image, rng)
            records.append((image, norm_box, norm_points, f"{HERE / 'photos' / name} (variant {variant})"))
        yield records


def build_demo(out: str | Path = DEFAULT_OUT, variants_per_face: int = 48, overwrite: bool = True) -> dict:
    """Write the demo set in the prepared format to ``out`` and return its manifest."""
    count = len(json.loads((HERE / "annotations.json").read_text())) * (variants_per_face + 1)
    return write_prepared(out, demo_records(variants_per_face), source=f"safefakes-demo:{HERE}", capacity=count,
                          overwrite=overwrite, extra={"licenses": str(HERE / "LICENSES")})
