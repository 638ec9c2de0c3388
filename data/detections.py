"""Faces in whole photos: the detections-file format and the face-alignment detector.

A detections file is a JSON object mapping each photo (its path relative to the photo folder, or its
file name) to a list of faces ``{"box": [x0, y0, x1, y1], "keypoints": [[x, y] x 7]}`` in photo pixels.
``keypoints`` is optional; an absent point is ``null``, ``[null, null]`` or any negative coordinate. A video
(``VIDEO_SUFFIXES``) maps to one such list per frame: ``{"clip.mp4": [[faces of frame 0], [faces of frame 1]]}``.
``lookup`` finds a file's entry by its relative path, or by its file name where that is unique.
``data.prepare`` and ``gan.anonymize`` read it, and ``FaceAlignmentDetector`` produces the same faces.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.keypoints import ABSENT, NUM_KEYPOINTS, pixel_keypoints_present
from data.record import DataError

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi"}
# face-alignment's weights and the names under which torch.hub caches them.
FACE_ALIGNMENT_WEIGHTS = {
    "s3fd-619a316812.pth": "face detector (S3FD)",
    "2DFAN4-11f355bf06.pth.tar": "landmark network (2DFAN4)",
}


@dataclass(frozen=True)
class Face:
    """One face in a photo. box: ``(4,)`` float64 xyxy pixels; keypoints: ``(7, 2)`` pixels, ``ABSENT`` if absent."""

    box: np.ndarray
    keypoints: np.ndarray


def no_keypoints() -> np.ndarray:
    return np.full((NUM_KEYPOINTS, 2), ABSENT)


def parse_face(entry, where: str) -> Face:
    """One entry of a detections file -> ``Face``; anything malformed is a ``DataError`` naming ``where``."""
    if not isinstance(entry, dict) or "box" not in entry:
        raise DataError("bad_detections", where,
                        f"expected {{'box': [x0, y0, x1, y1], 'keypoints': ...}}, got {entry!r}")
    try:
        box = np.asarray(entry["box"], dtype=np.float64)
    except (TypeError, ValueError):
        box = np.zeros(0)
    if box.shape != (4,) or not np.isfinite(box).all() or not (box[0] < box[2] and box[1] < box[3]):
        raise DataError("bad_detections", where,
                        f"box must be [x0, y0, x1, y1] with x0 < x1, y0 < y1; got {entry['box']!r}")
    points = entry.get("keypoints")
    if points is None:
        return Face(box, no_keypoints())
    if not isinstance(points, list) or len(points) != NUM_KEYPOINTS:
        raise DataError("bad_detections", where,
                        f"keypoints must be a list of {NUM_KEYPOINTS} [x, y] pairs (null = absent)")
    keypoints = no_keypoints()
    for k, point in enumerate(points):
        if point is None or (isinstance(point, list) and len(point) == 2 and None in point):
            continue  # absent
        try:
            xy = np.asarray(point, dtype=np.float64)
        except (TypeError, ValueError):
            xy = np.zeros(0)
        if xy.shape != (2,):
            raise DataError("bad_detections", where, f"keypoint {k} must be [x, y] or null, got {point!r}")
        if pixel_keypoints_present(xy):
            keypoints[k] = xy
    return Face(box, keypoints)


def load_detections(path: str | Path) -> dict[str, list]:
    """Read and check a whole detections file: ``{name: [Face]}`` for photos, ``{name: [[Face] per frame]}`` for
    videos; errors name the file, the photo (and frame) and the face."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError("bad_detections", str(path), str(error)) from error
    if not isinstance(data, dict):
        raise DataError("bad_detections", str(path), "expected an object mapping photo paths to lists of faces")
    table: dict[str, list] = {}
    for name, faces in data.items():
        if not isinstance(faces, list):
            raise DataError("bad_detections", f"{path} [{name}]", "expected a list of faces")
        if Path(name).suffix.lower() in VIDEO_SUFFIXES:
            frames = []
            for f, frame in enumerate(faces):
                if not isinstance(frame, list):
                    raise DataError("bad_detections", f"{path} [{name}, frame {f}]", "expected a list of faces")
                frames.append([parse_face(face, f"{path} [{name}, frame {f}, face {i}]")
                               for i, face in enumerate(frame)])
            table[name] = frames
        else:
            table[name] = [parse_face(face, f"{path} [{name}, face {i}]") for i, face in enumerate(faces)]
    return table


def lookup(table: dict[str, list], relative: str, names: dict[str, list[str]], where: str):
    """The entry of the file at ``relative`` (a posix path under its input folder): by that path, else by its file
    name when exactly one input has that name (``names``: file name -> the relative paths that have it); None if
    there is none. A file name that several inputs share is a ``DataError`` naming them."""
    if relative in table:
        return table[relative]
    name = Path(relative).name
    if name not in table:
        return None
    if len(names.get(name, [])) > 1:
        raise DataError("ambiguous_detections", where, f"the entry {name!r} could be any of "
                        f"{', '.join(sorted(names[name]))}: key it by the path relative to the input folder")
    return table[name]


def keypoints_from_68(landmarks: np.ndarray) -> np.ndarray:
    """iBUG 68-point landmarks ``(68, 2)`` -> the 7 SafeFakes keypoints ``(7, 2)`` in the same pixels.

    Nose tip 30; eyes the means of 42-47 (subject's left) and 36-41 (subject's right); ears the jaw ends
    16 (left) and 0 (right); shoulders cannot be derived from a face and are absent.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks, got {landmarks.shape}")
    points = no_keypoints()
    points[0] = landmarks[30]
    points[1] = landmarks[42:48].mean(axis=0)
    points[2] = landmarks[36:42].mean(axis=0)
    points[3] = landmarks[16]
    points[4] = landmarks[0]
    return points


def require_face_alignment_weights(reason: str = "") -> Path:
    """The torch.hub checkpoint folder if it holds face-alignment's weights, else an error naming what to place
    where."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    missing = [name for name in FACE_ALIGNMENT_WEIGHTS if not (checkpoints / name).is_file()]
    if missing:
        lines = "\n".join(f"  {checkpoints / name}   ({FACE_ALIGNMENT_WEIGHTS[name]})" for name in missing)
        raise FileNotFoundError(
            f"face-alignment needs its pretrained weights and could not download them{reason}. Place these files "
            f"(set TORCH_HOME to use another folder):\n{lines}\nor pass --detections FILE.json with your own boxes."
        )
    return checkpoints


class FaceAlignmentDetector:
    """Faces and 7 keypoints per photo from face-alignment (real weights from the torch.hub cache)."""

    def __init__(self, device: str = "cpu", batch_size: int = 8) -> None:
        import face_alignment  # heavy: imported only when photos are to be detected

        try:
            self.model = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device=device, face_detector="sfd",
                compile=device != "cpu", max_batch_size=batch_size,
            )
        except OSError as error:  # URLError is an OSError: offline and the weights are not in the cache
            require_face_alignment_weights(f" ({error})")
            raise

    def __call__(self, photo: np.ndarray) -> list[Face]:
        """``photo`` ``(H, W, 3)`` uint8 RGB -> its faces."""
        landmarks, _, boxes = self.model.get_landmarks_from_image(photo, return_bboxes=True)
        if landmarks is None:
            return []
        return [Face(np.asarray(box[:4], dtype=np.float64), keypoints_from_68(points[:, :2]))
                for points, box in zip(landmarks, boxes, strict=True)]
