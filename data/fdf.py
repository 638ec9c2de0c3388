"""Readers for the FDF dataset (Hukkelås et al., "DeepPrivacy", ISVC 2019) as it is distributed.

- ``FDFDataset``: the official release, ``fdf_metainfo.json`` plus PNGs named ``<index>.png`` anywhere
  under ``images/``; split by each face's ``category``.
- ``DeepPrivacyLayoutDataset``: DeepPrivacy's training layout, ``<split>/images/128/<i>.png``,
  ``<split>/landmarks.npy`` (N, 7, 2) normalised and ``<split>/bounding_box/128.npy`` (N, 4).
"""

import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
from torch.utils.data import Dataset

from data.keypoints import NUM_KEYPOINTS
from data.png import read_png
from data.record import IMAGE_SIZE, DataError, FaceRecord, make_record

Split = Literal["train", "val"]
FDF_CATEGORIES = {"train": "training", "val": "validation"}


def _find_pngs(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of every PNG below ``folder`` (FDF sorts images into licence subfolders)."""
    found = {}
    for directory, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".png"):
                found[name[:-4]] = Path(directory) / name
    return found


class FDFDataset(Dataset[FaceRecord]):
    """The official FDF release at ``root`` (``fdf_metainfo.json`` + ``images/**/<index>.png``)."""

    def __init__(self, root: str | Path, split: Split = "train") -> None:
        self.root = Path(root)
        metainfo_path = self.root / "fdf_metainfo.json"
        if not metainfo_path.is_file():
            raise DataError("missing_metadata", str(self.root), "no fdf_metainfo.json (the official FDF layout)")
        try:
            metainfo = json.loads(metainfo_path.read_text())
        except json.JSONDecodeError as error:
            raise DataError("bad_metadata", str(metainfo_path), f"not valid JSON: {error}") from error
        category = FDF_CATEGORIES[split]
        self.keys = sorted((k for k, v in metainfo.items() if v.get("category") == category), key=int)
        if not self.keys:
            raise DataError("empty", str(metainfo_path), f"no faces with category {category!r}")
        self.meta = {k: metainfo[k] for k in self.keys}
        self.paths = _find_pngs(self.root / "images")
        self.split = split

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> FaceRecord:
        key = self.keys[index]
        meta = self.meta[key]
        path = self.paths.get(key, self.root / "images" / f"{key}.png")
        where = f"{path} [index {key}]"
        for field in ("bounding_box", "landmark"):
            if field not in meta:
                raise DataError("bad_metadata", where, f"fdf_metainfo.json has no {field!r} for this face")
        return make_record(read_png(path, where), meta["bounding_box"], meta["landmark"], int(key), str(path))


class DeepPrivacyLayoutDataset(Dataset[FaceRecord]):
    """DeepPrivacy's training layout at ``root``.

    ``box_units``: DeepPrivacy stored boxes in pixels of the 128 px crop ("pixels"); "normalized" reads
    boxes already in [0, 1].
    """

    def __init__(
        self, root: str | Path, split: Split = "train", box_units: Literal["pixels", "normalized"] = "pixels"
    ) -> None:
        self.root = Path(root)
        folder = self.root / split
        self.image_dir = folder / "images" / str(IMAGE_SIZE)
        landmarks_path = folder / "landmarks.npy"
        boxes_path = folder / "bounding_box" / f"{IMAGE_SIZE}.npy"
        for path in (self.image_dir, landmarks_path, boxes_path):
            if not path.exists():
                raise DataError("missing_metadata", str(path), "missing from the DeepPrivacy layout")
        self.keypoints = np.load(landmarks_path, allow_pickle=False).astype(np.float32)
        self.boxes = np.load(boxes_path, allow_pickle=False).astype(np.float32)
        if box_units == "pixels":
            self.boxes = self.boxes / IMAGE_SIZE
        if len(self.keypoints) != len(self.boxes):
            raise DataError(
                "length_mismatch",
                str(folder),
                f"{landmarks_path.name} has {len(self.keypoints)} rows, {boxes_path.name} has {len(self.boxes)}",
            )
        if len(self.boxes) == 0:
            raise DataError("empty", str(folder), "no samples")
        if self.keypoints.shape[1:] != (NUM_KEYPOINTS, 2):
            raise DataError("bad_keypoints", str(landmarks_path),
                            f"shape {self.keypoints.shape}, expected (N, {NUM_KEYPOINTS}, 2)")
        self.split = split

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int) -> FaceRecord:
        path = self.image_dir / f"{index}.png"
        where = f"{path} [index {index}]"
        return make_record(read_png(path, where), self.boxes[index], self.keypoints[index], index, str(path))
