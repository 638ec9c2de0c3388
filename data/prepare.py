"""Build a prepared dataset from raw photos.

    python -m data.prepare --images DIR --out DIR [--detections FILE.json] [--device cpu] [--min-size 128]

Faces and their 68 landmarks come from face-alignment (S3FD + 2DFAN4), or from ``--detections``:
a JSON object mapping each photo's path relative to ``--images`` to a list of faces,
``{"box": [x0, y0, x1, y1], "keypoints": [[x, y] x 7]}`` in photo pixels (keypoints optional, -1 = absent).
Each face is cropped the DeepPrivacy way (``data.crop``) and written in the prepared format; every photo
or face left out is counted, warned about and listed in the manifest with the reason.
"""

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from data.crop import crop_face, crop_window
from data.prepared import write_prepared
from data.record import DataError, make_record
from gan.keypoints import NUM_KEYPOINTS

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# face-alignment's weights and the names under which torch.hub caches them.
FACE_ALIGNMENT_WEIGHTS = {
    "s3fd-619a316812.pth": "face detector (S3FD)",
    "2DFAN4-11f355bf06.pth.tar": "landmark network (2DFAN4)",
}


def keypoints_from_68(landmarks: np.ndarray) -> np.ndarray:
    """iBUG 68-point landmarks ``(68, 2)`` -> the 7 SafeFakes keypoints ``(7, 2)`` in the same pixels.

    Nose tip 30; eyes the means of 42-47 (subject's left) and 36-41 (subject's right); ears the jaw ends
    16 (left) and 0 (right); shoulders cannot be derived from a face and are absent (-1).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks, got {landmarks.shape}")
    points = np.full((NUM_KEYPOINTS, 2), -1.0)
    points[0] = landmarks[30]
    points[1] = landmarks[42:48].mean(axis=0)
    points[2] = landmarks[36:42].mean(axis=0)
    points[3] = landmarks[16]
    points[4] = landmarks[0]
    return points


def load_detections(path: str | Path) -> dict[str, list[dict]]:
    """Read and check a detections file; errors name the file, the photo and the face."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError("bad_detections", str(path), str(error)) from error
    if not isinstance(data, dict):
        raise DataError("bad_detections", str(path), "expected an object mapping photo paths to lists of faces")
    for photo, faces in data.items():
        if not isinstance(faces, list):
            raise DataError("bad_detections", f"{path} [{photo}]", "expected a list of faces")
        for i, face in enumerate(faces):
            where = f"{path} [{photo}, face {i}]"
            box = np.asarray(face.get("box", []), dtype=np.float64) if isinstance(face, dict) else np.zeros(0)
            if box.shape != (4,) or not np.isfinite(box).all() or not (box[0] < box[2] and box[1] < box[3]):
                raise DataError("bad_detections", where, f"box must be [x0, y0, x1, y1] with x0 < x1, y0 < y1; got {face}")
            if "keypoints" in face and np.asarray(face["keypoints"], dtype=np.float64).shape != (NUM_KEYPOINTS, 2):
                raise DataError("bad_detections", where, "keypoints must be 7 [x, y] pairs")
    return data


def require_face_alignment_weights(reason: str = "") -> Path:
    """The torch.hub checkpoint folder if it holds face-alignment's weights, else an error naming what to place where."""
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

    def __call__(self, photo: np.ndarray) -> list[dict]:
        landmarks, _, boxes = self.model.get_landmarks_from_image(photo, return_bboxes=True)
        if landmarks is None:
            return []
        return [{"box": box[:4].tolist(), "keypoints": keypoints_from_68(points[:, :2]).tolist()}
                for points, box in zip(landmarks, boxes)]


def photo_records(images: Path, photos: list[Path], faces_of, min_size: int, progress: bool = True):
    """Yield a ``FaceRecord`` per usable face and a ``DataError`` per photo or face left out."""
    index = 0
    for path in tqdm(photos, disable=not progress, desc="prepare"):
        name = path.relative_to(images).as_posix()
        try:
            with Image.open(path) as image:
                photo = np.asarray(image.convert("RGB"))
        except (OSError, SyntaxError, ValueError) as error:
            yield DataError("corrupt_image", str(path), str(error))
            continue
        faces = faces_of(name, photo)
        if faces is None:
            yield DataError("no_detections_entry", str(path), f"{name!r} is not in the detections file")
            continue
        if not faces:
            yield DataError("no_face", str(path), "no face detected")
        for i, face in enumerate(faces):
            where = f"{path} [face {i}]"
            box = np.asarray(face["box"], dtype=np.float64)
            keypoints = np.asarray(face.get("keypoints", np.full((NUM_KEYPOINTS, 2), -1.0)), dtype=np.float64)
            window = crop_window(box, photo.shape[1], photo.shape[0])
            side = int(window[2] - window[0])
            if side < min_size:
                yield DataError("too_small", where, f"crop of {side} px is under --min-size {min_size}")
                continue
            image, norm_box, norm_points = crop_face(photo, box, keypoints, window)
            try:
                yield make_record(image, norm_box, norm_points, index, where)
            except DataError as error:
                yield error
                continue
            index += 1


def prepare(images: str | Path, out: str | Path, detections: str | Path | None = None, device: str = "cpu",
            batch_size: int = 8, min_size: int = 128, overwrite: bool = False, progress: bool = True) -> dict:
    images = Path(images)
    if not images.is_dir():
        raise DataError("missing_dataset", str(images), "no such directory")
    photos = sorted(p for p in images.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise DataError("empty", str(images), f"no photos ({', '.join(sorted(PHOTO_SUFFIXES))})")
    if detections is not None:
        table = load_detections(detections)

        def faces_of(name: str, photo: np.ndarray):
            return table.get(name)
    else:
        detector = FaceAlignmentDetector(device, batch_size)

        def faces_of(name: str, photo: np.ndarray):
            return detector(photo)

    records = photo_records(images, photos, faces_of, min_size, progress)
    manifest = write_prepared(out, records, source=f"prepare:{images}", capacity=len(photos), overwrite=overwrite,
                              extra={"detections": str(detections) if detections else "face-alignment"})
    if manifest["skipped_count"]:
        warnings.warn(f"{out}: left out {manifest['skipped_count']} photo(s)/face(s) "
                      f"{manifest['skipped_by_problem']} (listed in manifest.json)", stacklevel=2)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder of photos (searched recursively)")
    parser.add_argument("--out", required=True, help="new prepared dataset folder")
    parser.add_argument("--detections", help="JSON with your own boxes/keypoints instead of face-alignment")
    parser.add_argument("--device", default="cpu", help="device for face-alignment (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--batch-size", type=int, default=8, help="faces per landmark-network batch")
    parser.add_argument("--min-size", type=int, default=128, help="smallest crop window kept, in photo pixels")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        manifest = prepare(args.images, args.out, args.detections, args.device, args.batch_size, args.min_size,
                           args.overwrite)
    except (DataError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {manifest['count']} faces to {args.out}; left out {manifest['skipped_count']} "
          f"{manifest['skipped_by_problem'] or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
