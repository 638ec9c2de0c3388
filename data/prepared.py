"""SafeFakes' prepared format: random access to face crops with no image decoding.

A prepared dataset is a folder:

- ``images.u8``: raw uint8 array ``(N, 3, S, S)`` (S = 128; planar, the layout the networks take, so a
  batch needs no transposition), memory-mapped on read;
- ``boxes.npy`` ``(N, 4)`` float32 and ``keypoints.npy`` ``(N, 7, 2)`` float32 (``FaceRecord`` conventions);
- ``source_index.npy`` ``(N,)`` int64: each sample's index in the dataset it was converted from;
- ``manifest.json``: format name and version, count, image size, source, sha256 of every file, and the
  samples skipped while writing it, each with its problem.
"""

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data.checksum import sha256_file
from data.keypoints import NUM_KEYPOINTS
from data.record import IMAGE_SIZE, DataError, FaceBatch, FaceRecord, make_record

FORMAT = "safefakes-prepared"
VERSION = 1
ARRAYS = ("boxes.npy", "keypoints.npy", "source_index.npy")


def read_manifest(root: Path) -> dict:
    path = root / "manifest.json"
    if not path.is_file():
        raise DataError("missing_metadata", str(root), "no manifest.json: not a prepared dataset")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError("bad_metadata", str(path), f"not valid JSON: {error}") from error
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise DataError(
            "bad_metadata", str(path), f"format {manifest.get('format')!r} version {manifest.get('version')!r}, "
            f"expected {FORMAT!r} version {VERSION}"
        )
    return manifest


class PreparedDataset(Dataset[FaceRecord]):
    """A prepared dataset folder. ``__getitems__`` serves whole batches straight from the memory map."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.count = int(self.manifest["count"])
        self.image_size = int(self.manifest["image_size"])
        if self.count == 0:
            raise DataError("empty", str(self.root), "the prepared dataset holds no samples")
        arrays = {}
        for name in ARRAYS:
            path = self.root / name
            if not path.is_file():
                raise DataError("missing_metadata", str(path), "missing from the prepared dataset")
            arrays[name] = np.load(path, allow_pickle=False)
            if len(arrays[name]) != self.count:
                raise DataError(
                    "length_mismatch", str(path), f"{len(arrays[name])} rows, manifest.json says {self.count}"
                )
        self.boxes, self.keypoints, self.source_index = (arrays[name] for name in ARRAYS)
        images = self.root / "images.u8"
        expected = self.count * self.image_size * self.image_size * 3
        if not images.is_file() or images.stat().st_size != expected:
            size = images.stat().st_size if images.is_file() else "no file"
            raise DataError("length_mismatch", str(images), f"size {size}, expected {expected} bytes")
        self._images: np.ndarray | None = None  # opened lazily, once per process (workers included)

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            shape = (self.count, 3, self.image_size, self.image_size)
            self._images = np.memmap(self.root / "images.u8", dtype=np.uint8, mode="r", shape=shape)
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}  # a memmap would be pickled by value

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> FaceRecord:
        if not 0 <= index < self.count:
            raise IndexError(f"{self.root}: index {index} out of range for {self.count} samples")
        return make_record(
            np.asarray(self.images[index]).transpose(1, 2, 0), self.boxes[index], self.keypoints[index], index,
            str(self.root)
        )

    def __getitems__(self, indices: Sequence[int]) -> FaceBatch:
        order = np.asarray(indices, dtype=np.int64)
        return FaceBatch(
            torch.from_numpy(self.images[order]),
            torch.from_numpy(self.boxes[order]),
            torch.from_numpy(self.keypoints[order]),
            torch.from_numpy(order),
        )

    def verify_checksums(self) -> list[str]:
        """Names of the files whose sha256 differs from the manifest's."""
        return [name for name, digest in self.manifest["checksums"].items() if sha256_file(self.root / name) != digest]


def write_prepared(
    out: str | Path,
    records: Iterable[FaceRecord | DataError],
    source: str,
    capacity: int,
    overwrite: bool = False,
    extra: dict | None = None,
) -> dict:
    """Write ``records`` to a new prepared dataset at ``out`` and return its manifest.

    A ``DataError`` among ``records`` is a sample the caller chose to skip: it is listed in the manifest.
    The folder is written under a temporary name and renamed at the end, so ``out`` is either complete or absent.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite to replace it)")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        manifest = _write(partial, records, source, capacity, extra or {})
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():  # replaced only once the new dataset is complete
        old = out.with_name(out.name + ".old")
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)
    return manifest


def _write(partial: Path, records: Iterable[FaceRecord | DataError], source: str, capacity: int, extra: dict) -> dict:
    boxes, keypoints, source_index, skipped = [], [], [], []
    with open(partial / "images.u8", "wb") as images:
        for record in records:
            if isinstance(record, DataError):
                skipped.append({"where": record.where, "problem": record.problem, "detail": record.detail})
                continue
            if record.image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
                raise DataError("wrong_size", record.source, f"image shape {record.image.shape}")
            images.write(np.ascontiguousarray(record.image.transpose(2, 0, 1)).tobytes())
            boxes.append(record.box)
            keypoints.append(record.keypoints)
            source_index.append(record.index)
        images.flush()
        os.fsync(images.fileno())
    count = len(boxes)
    np.save(partial / "boxes.npy", np.asarray(boxes, dtype=np.float32).reshape(count, 4))
    np.save(partial / "keypoints.npy", np.asarray(keypoints, dtype=np.float32).reshape(count, NUM_KEYPOINTS, 2))
    np.save(partial / "source_index.npy", np.asarray(source_index, dtype=np.int64))
    problems = Counter(entry["problem"] for entry in skipped)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "count": count,
        "image_size": IMAGE_SIZE,
        "source": source,
        "source_count": capacity,
        "checksums": {name: sha256_file(partial / name) for name in ("images.u8", *ARRAYS)},
        "skipped_count": len(skipped),
        "skipped_by_problem": dict(problems),
        "skipped": skipped,
        **extra,
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
