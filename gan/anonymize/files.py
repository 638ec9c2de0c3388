"""What an anonymization job reads and writes: the inputs (files and folders walked recursively), their outputs
(the same relative paths under ``--output``), atomic writes and the journal that makes a job resumable.

An output is complete when its file exists under its final name *and* the journal (``<output>/.anonymize.jsonl``)
records it for the same input (size and modification time), the same export (its sha256) and the same settings.
Outputs are written to a temporary name beside their final one and renamed, then recorded; a job killed at any
moment therefore leaves either a complete output or one that is redone, never a half-written file that is kept.
"""

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from data.detections import PHOTO_SUFFIXES, VIDEO_SUFFIXES
from data.record import DataError

ANNOTATION_SUFFIXES = {".json", ".txt"}  # COCO and YOLO files travel with --copy-annotations
JOURNAL = ".anonymize.jsonl"


@dataclass(frozen=True)
class Item:
    """One input file: where it is, its path under its input folder (posix; the file name for a file given
    directly), and whether it is a photo or a video."""

    source: Path
    relative: str
    kind: str  # "photo" or "video"

    @property
    def key(self) -> int:
        """A stable number of the item (from its relative path): seeds its faces' latents whatever the order, the
        batch or the rank it is processed in."""
        return int.from_bytes(hashlib.sha256(self.relative.encode()).digest()[:6], "big")


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "photo" if suffix in PHOTO_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def collect(inputs: list[str | Path]) -> tuple[list[Item], list[tuple[Path, Path]]]:
    """The photos and videos of ``inputs`` (files, and folders walked recursively, in sorted order) and the
    annotation files of the folders as ``(source, relative)``. Errors: a missing input, a file that is neither a
    photo nor a video, two inputs with one output path."""
    items: dict[str, Item] = {}
    annotations: list[tuple[Path, Path]] = []
    for given in map(Path, inputs):
        if given.is_dir():
            for path in sorted(p for p in given.rglob("*") if p.is_file()):
                relative = path.relative_to(given)
                if any(part.startswith(".") for part in relative.parts):
                    continue  # hidden files and folders (.git, .DS_Store, a previous job's temporaries)
                if kind_of(path):
                    _add(items, Item(path, relative.as_posix(), kind_of(path)))
                elif path.suffix.lower() in ANNOTATION_SUFFIXES:
                    annotations.append((path, relative))
        elif given.is_file():
            if kind_of(given) is None:
                raise DataError("unknown_input", str(given), f"not a photo ({', '.join(sorted(PHOTO_SUFFIXES))}) or "
                                f"a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
            _add(items, Item(given, given.name, kind_of(given)))
        else:
            raise DataError("missing_input", str(given), "no such file or folder")
    return list(items.values()), annotations


def file_names(items: list[Item]) -> dict[str, list[str]]:
    """File name -> the relative paths that have it (``data.detections.lookup`` accepts a name that is unique)."""
    names: dict[str, list[str]] = {}
    for item in items:
        names.setdefault(Path(item.relative).name, []).append(item.relative)
    return names


def _add(items: dict[str, Item], item: Item) -> None:
    if item.relative in items:
        raise DataError("output_collision", str(item.source), f"and {items[item.relative].source} would both be "
                        f"written to {item.relative}: give their folders instead, or run them into separate outputs")
    items[item.relative] = item


def check_output(output: Path, inputs: list[str | Path]) -> None:
    """Nothing is written next to the inputs: the output may not be an input folder or lie inside one, nor be the
    folder of an input file."""
    out = output.resolve()
    for given in map(Path, inputs):
        folder = given.resolve() if given.is_dir() else given.resolve().parent
        if out == folder or (given.is_dir() and folder in out.parents):
            raise DataError("output_in_input", str(output), f"is or lies inside the input folder {folder}; "
                            "choose an output folder outside the inputs")


def temporary(path: Path) -> Path:
    """Where ``path`` is written before it is renamed: beside it, hidden, with its suffix (so formats follow it)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def commit(tmp: Path, path: Path) -> None:
    """Make a finished temporary file the output, atomically (flushed first)."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Journal:
    """The record of complete outputs (see the module docstring); one JSON line per output. Rank ``r`` of a
    ``--devices`` job appends to ``.anonymize.<r>.jsonl`` (rank 0 and single processes to ``.anonymize.jsonl``);
    every such file is read, so a job resumes whatever number of processes ran it before."""

    def __init__(self, output: Path, settings: dict, rank: int = 0) -> None:
        self.path = output / (JOURNAL if rank == 0 else f".anonymize.{rank}.jsonl")
        self.settings = settings
        self.entries: dict[str, list[dict]] = {}
        for path in sorted(output.glob(".anonymize*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: that output is redone
                self.entries.setdefault(entry.get("relative"), []).append(entry)

    @staticmethod
    def stamp(item: Item) -> dict:
        stat = item.source.stat()
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def complete(self, item: Item, output: Path) -> dict | None:
        """The journal entry that makes ``output`` complete (same input, export and settings), or None."""
        if not output.is_file():
            return None
        stamp = self.stamp(item)
        matching = [e for e in self.entries.get(item.relative, [])
                    if e.get("input") == stamp and e.get("settings") == self.settings]
        return matching[-1] if matching else None

    def record(self, item: Item, summary: dict) -> None:
        entry = {"relative": item.relative, "input": self.stamp(item), "settings": self.settings, **summary}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.entries.setdefault(item.relative, []).append(entry)


def copy_annotations(annotations: list[tuple[Path, Path]], output: Path) -> int:
    """Copy COCO ``*.json`` and YOLO ``*.txt`` files to the same relative paths (no geometry changes, so their
    boxes stay valid). Returns how many were copied."""
    for source, relative in annotations:
        target = output / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary(target)
        shutil.copyfile(source, tmp)
        commit(tmp, target)
    return len(annotations)
