"""WIDER FACE (Yang et al., CVPR 2016; shuoyang1213.me/WIDERFACE), read from its own layout::

    ROOT/WIDER_train/images/<event>/<file>.jpg        ROOT/WIDER_val/images/...
    ROOT/wider_face_split/wider_face_train_bbx_gt.txt  ROOT/wider_face_split/wider_face_val_bbx_gt.txt

Each entry of a ``*_bbx_gt.txt`` file is the photo's path (under ``images/``), its face count ``n``, then ``n``
lines ``x y w h blur expression illumination invalid occlusion pose`` (pixels, top-left corner and size; a photo
with no face has ``0`` and one line of zeros). The flags: blur 0/1/2 (clear/normal/heavy), expression 0/1
(typical/exaggerated), illumination 0/1 (normal/extreme), invalid 0/1, occlusion 0/1/2 (none/partial/heavy),
pose 0/1 (typical/atypical).

Ignore rule (the one the dataset's authors and its evaluation code apply): a face marked ``invalid`` or ``heavy``
occlusion, and a box of zero width or height, is **ignored**: it is kept (anonymised like every other face and
shown to the detector's trainer as a region to ignore), but neither a hit nor a miss when a detector is scored.
WIDER FACE has no keypoints: ``keypoints`` are all absent unless the caller merges a detections file.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.record import DataError

SPLITS = ("train", "val")


@dataclass
class Annotated:
    """One photo and its faces: ``boxes`` ``(N, 4)`` xyxy pixels, ``ignore`` ``(N,)`` (see the module docstring),
    ``keypoints`` ``(N, 7, 2)`` pixels or None (all absent)."""

    path: Path
    relative: str
    boxes: np.ndarray
    ignore: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    keypoints: np.ndarray | None = None


def annotation_file(root: Path, split: str) -> Path:
    return root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"


def read_wider(root: str | Path, split: str) -> list[Annotated]:
    """The photos of one split with their faces; a malformed line or a missing photo is a ``DataError`` naming
    the file and the line."""
    if split not in SPLITS:
        raise ValueError(f"WIDER FACE split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    gt = annotation_file(root, split)
    images = root / f"WIDER_{split}" / "images"
    if not gt.is_file():
        raise DataError("missing_annotations", str(gt), "no such file (WIDER FACE's wider_face_split.zip holds it)")
    lines = gt.read_text().splitlines()
    out, i = [], 0

    def bad(number: int, reason: str) -> DataError:
        return DataError("malformed_annotation", f"{gt}:{number}", reason)

    while i < len(lines):
        relative = lines[i].strip()
        if not relative:
            i += 1
            continue
        if not relative.lower().endswith((".jpg", ".jpeg", ".png")):
            raise bad(i + 1, f"expected a photo path, got {relative[:60]!r}")
        if i + 1 >= len(lines) or not lines[i + 1].strip().isdigit():
            raise bad(i + 2, f"expected the face count of {relative}")
        count = int(lines[i + 1])
        rows = max(count, 1)  # a photo without faces has one line of zeros
        boxes, ignore = [], []
        for j in range(i + 2, i + 2 + rows):
            if j >= len(lines):
                raise bad(j + 1, f"{relative}: the file ends before its {count} face line(s)")
            values = lines[j].split()
            if len(values) < 10 or not all(v.lstrip("-").isdigit() for v in values[:10]):
                raise bad(j + 1, f"{relative}: expected 10 integers (x y w h blur expression illumination "
                          f"invalid occlusion pose), got {lines[j].strip()[:80]!r}")
            if count == 0:
                continue
            x, y, w, h, _, _, _, invalid, occlusion, _ = (int(v) for v in values[:10])
            boxes.append((x, y, x + w, y + h))
            ignore.append(invalid == 1 or occlusion == 2 or w <= 0 or h <= 0)
        path = images / relative
        if not path.is_file():
            raise DataError("missing_photo", str(path), f"listed at {gt}:{i + 1} but not there")
        out.append(Annotated(path, relative, np.array(boxes, dtype=np.float64).reshape(-1, 4),
                             np.array(ignore, dtype=bool)))
        i += 2 + rows
    if not out:
        raise DataError("empty_annotations", str(gt), "lists no photo")
    return out
