"""Anonymise the photos of a job: decoded in DataLoader workers, the faces of several photos generated in one batch
(``batch_size`` counts faces), each output written atomically and recorded in the journal."""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from data.detections import Face
from data.keypoints import NUM_KEYPOINTS
from gan.anonymize.anonymizer import Anonymizer
from gan.anonymize.files import Item, Journal, commit, temporary


@dataclass
class Decoded:
    """A photo as a worker decoded it: the RGB array, its format and JPEG chroma subsampling, or why it failed."""

    index: int
    photo: np.ndarray | None
    format: str | None = None
    sampling: int = -1
    error: str | None = None


class PhotoFiles(Dataset):
    """The job's photos, decoded (EXIF orientation is not applied: pixels stay where the detections put them)."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Decoded:
        try:
            with Image.open(self.items[index].source) as opened:
                opened.load()
                sampling = -1
                if opened.format == "JPEG":
                    from PIL import JpegImagePlugin

                    sampling = JpegImagePlugin.get_sampling(opened)
                return Decoded(index, np.asarray(opened.convert("RGB")), opened.format, sampling)
        except (OSError, SyntaxError, ValueError) as error:
            return Decoded(index, None, error=f"cannot read the photo: {error}")


def save_like(result: np.ndarray, path: Path, source_format: str | None, sampling: int, quality: int) -> None:
    """Save in the input's format, atomically: JPEG at ``quality`` with the input's chroma subsampling, PNG and
    WebP losslessly. No metadata is copied: EXIF (camera, time, GPS position) never reaches the anonymised file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    image = Image.fromarray(result)
    if source_format == "JPEG":
        image.save(tmp, "JPEG", quality=quality, subsampling=sampling if sampling != -1 else 0)
    elif source_format == "WEBP":
        image.save(tmp, "WEBP", lossless=True)
    else:
        image.save(tmp, source_format or None)  # PNG, BMP, TIFF: lossless
    commit(tmp, path)


def arrays(faces: list[Face]) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([f.box for f in faces]).reshape(-1, 4),
            np.array([f.keypoints for f in faces]).reshape(-1, NUM_KEYPOINTS, 2))


class PhotoBatcher:
    """Gathers decoded photos until their faces fill a batch (``anonymizer.batch_size`` faces), then generates them
    in one call and commits each output; ``add`` and ``flush`` return ``(item, its summary)`` per committed photo.
    A photo that could not be read goes to ``fail`` (which may raise, under ``--strict``)."""

    def __init__(self, items: list[Item], anonymizer: Anonymizer,
                 faces_of: Callable[[Item, np.ndarray], list[Face]], output: Path, journal: Journal, quality: int,
                 fail: Callable[[Item, str], None]) -> None:
        self.items, self.anonymizer, self.faces_of = items, anonymizer, faces_of
        self.output, self.journal, self.quality, self.fail = output, journal, quality, fail
        self.pending: list[tuple[Decoded, list[Face]]] = []
        self.queued = 0

    def add(self, decoded: Decoded) -> list[tuple[Item, dict]]:
        item = self.items[decoded.index]
        if decoded.photo is None:
            self.fail(item, decoded.error)
            return []
        faces = self.faces_of(item, decoded.photo)
        self.pending.append((decoded, faces))
        self.queued += len(faces)
        return self.flush() if self.queued >= self.anonymizer.batch_size else []

    def flush(self) -> list[tuple[Item, dict]]:
        pending, self.pending, self.queued = self.pending, [], 0
        if not pending:
            return []
        boxes, points = zip(*(arrays(faces) for _, faces in pending), strict=True)
        keys = [self.items[d.index].key for d, _ in pending]
        results = self.anonymizer.many([d.photo for d, _ in pending], list(boxes), list(points), keys)
        done = []
        for (decoded, faces), (result, report) in zip(pending, results, strict=True):
            item = self.items[decoded.index]
            save_like(result, self.output / item.relative, decoded.format, decoded.sampling, self.quality)
            summary = {"faces": len(faces), "generated": report.generated,
                       "generated_without_keypoints": report.generated_without_keypoints, "blurred": report.blurred}
            self.journal.record(item, summary)
            done.append((item, summary))
        return done


def anonymize_photos(items: list[Item], anonymizer: Anonymizer, faces_of: Callable[[Item, np.ndarray], list[Face]],
                     output: Path, journal: Journal, quality: int, workers: int,
                     fail: Callable[[Item, str], None]) -> Iterator[tuple[Item, dict]]:
    """Anonymise ``items`` into ``output`` in this process; yields ``(item, its summary)`` as each output is
    committed."""
    loader = DataLoader(PhotoFiles(items), batch_size=None, num_workers=workers,
                        persistent_workers=False, collate_fn=lambda decoded: decoded)
    batcher = PhotoBatcher(items, anonymizer, faces_of, output, journal, quality, fail)
    for decoded in loader:
        yield from batcher.add(decoded)
    yield from batcher.flush()


class Progress:
    """A tqdm bar (files and faces per second, ETA) in a terminal; a plain line every ``every_seconds`` otherwise."""

    def __init__(self, total: int, unit: str, terminal: bool, every_seconds: float = 10.0) -> None:
        from tqdm import tqdm

        self.total, self.unit, self.terminal, self.every = total, unit, terminal, every_seconds
        self.done = self.faces = 0
        self.started = self.printed = time.perf_counter()
        self.bar = tqdm(total=total, unit=unit, desc="anonymize", dynamic_ncols=True) if terminal else None

    def update(self, files: int, faces: int) -> None:
        self.done += files
        self.faces += faces
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.faces / elapsed:.1f} faces/s", refresh=False)
            self.bar.update(files)
        elif time.perf_counter() - self.printed >= self.every or self.done == self.total:
            self.printed = time.perf_counter()
            rate = self.done / elapsed
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            print(f"anonymize: {self.done}/{self.total} {self.unit}s, {self.faces} faces, "
                  f"{self.faces / elapsed:.1f} faces/s, ETA {eta:.0f} s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def worker_count(requested: int | None) -> int:
    """DataLoader workers that decode photos: ``--workers``, else up to 4 of this machine's cores (0: in-process)."""
    if requested is not None:
        return requested
    return min(4, max(torch.get_num_threads() - 1, 0))
