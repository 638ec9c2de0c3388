"""Build a prepared dataset from raw photos.

    python -m data.prepare --images DIR --out DIR [--detections FILE.json] [--device cpu] [--min-size 128]

Faces and their 68 landmarks come from face-alignment (S3FD + 2DFAN4), or from ``--detections``:
a JSON object mapping each photo's path relative to ``--images`` to a list of faces (``data.detections``:
``{"box": [x0, y0, x1, y1], "keypoints": [[x, y] x 7]}`` in photo pixels, keypoints optional, null = absent).
Each face is cropped the DeepPrivacy way (``data.crop``) and written in the prepared format; every photo
or face left out is counted, warned about and listed in the manifest with the reason.
"""

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from data.crop import crop_face, crop_window
from data.detections import PHOTO_SUFFIXES, FaceAlignmentDetector, load_detections
from data.prepared import write_prepared
from data.record import DataError, make_record


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
            window = crop_window(face.box, photo.shape[1], photo.shape[0])
            side = int(window[2] - window[0])
            if side < min_size:
                yield DataError("too_small", where, f"crop of {side} px is under --min-size {min_size}")
                continue
            image, norm_box, norm_points = crop_face(photo, face.box, face.keypoints, window)
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
