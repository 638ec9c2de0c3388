"""Tiny data for the tests: datasets on disk in every supported layout, and random network inputs."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

BOX = [0.25, 0.3, 0.75, 0.8]


def face_image(seed: int, size: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def keypoints(seed: int) -> list[list[float]]:
    points = np.random.default_rng(seed + 1000).uniform(0.2, 0.8, (7, 2))
    points[5:] = -1
    return points.round(4).tolist()


def write_fdf(root: Path, train: int = 4, val: int = 2) -> Path:
    """The official release: fdf_metainfo.json + images/<licence folder>/<index>.png."""
    meta = {}
    for index in range(train + val):
        folder = root / "images" / ("CC-BY" if index % 2 else "CC0")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face_image(index)).save(folder / f"{index}.png")
        meta[str(index)] = {
            "bounding_box": BOX, "landmark": keypoints(index),
            "category": "training" if index < train else "validation", "license": "CC0", "author": "x",
        }
    (root / "fdf_metainfo.json").write_text(json.dumps(meta))
    return root


def write_deepprivacy(root: Path, count: int = 3, split: str = "train") -> Path:
    """DeepPrivacy's layout: <split>/images/128/<i>.png, landmarks.npy, bounding_box/128.npy (pixels)."""
    folder = root / split
    (folder / "images" / "128").mkdir(parents=True)
    (folder / "bounding_box").mkdir()
    for index in range(count):
        Image.fromarray(face_image(index)).save(folder / "images" / "128" / f"{index}.png")
    np.save(folder / "landmarks.npy", np.array([keypoints(i) for i in range(count)], dtype=np.float32))
    np.save(folder / "bounding_box" / "128.npy", np.array([BOX] * count, dtype=np.float32) * 128)
    return root


def face_batch(batch: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random images in [-1, 1], a centred face-box mask and random keypoints."""
    image = torch.rand(batch, 3, resolution, resolution) * 2 - 1
    mask = torch.zeros(batch, 1, resolution, resolution)
    lo, hi = resolution // 4, 3 * resolution // 4
    mask[..., lo:hi, lo:hi] = 1
    keypoints = torch.rand(batch, 7, 2)
    keypoints[:, 5:] = -1  # shoulders absent, as in most FDF faces
    return image, mask, keypoints
