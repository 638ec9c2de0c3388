"""The data contract: the record every reader returns, the batch every loader delivers, their checks,
and the one conversion between stored uint8 images and the networks' float range."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from data.keypoints import ABSENT, NUM_KEYPOINTS, keypoints_present

IMAGE_SIZE = 128


class DataError(ValueError):
    """A sample or a dataset that cannot be used. ``problem`` is a short category, ``where`` names file and index."""

    def __init__(self, problem: str, where: str, detail: str) -> None:
        super().__init__(f"{where}: {problem}: {detail}")
        self.problem = problem
        self.where = where
        self.detail = detail

    def __reduce__(self):  # survive the trip back from a DataLoader worker
        return (type(self), (self.problem, self.where, self.detail))


@dataclass(frozen=True)
class FaceRecord:
    """One face crop.

    image: ``(128, 128, 3)`` uint8 RGB.
    box: ``(4,)`` float32 face box (xmin, ymin, xmax, ymax) normalised to [0, 1] inside the crop.
    keypoints: ``(7, 2)`` float32 (x, y) normalised (``data.keypoints`` order); a point outside [0, 1) is absent.
    index: the sample's index in its dataset; source: where it came from (a file), for error messages.
    """

    image: np.ndarray
    box: np.ndarray
    keypoints: np.ndarray
    index: int
    source: str


def check_image(image: np.ndarray, where: str, size: int = IMAGE_SIZE) -> np.ndarray:
    """Refuse anything but a ``(size, size, 3)`` uint8 RGB array; nothing is converted silently."""
    if image.dtype != np.uint8:
        raise DataError("wrong_dtype", where, f"image dtype is {image.dtype}, expected uint8")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] != 3):
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise DataError("wrong_channels", where, f"image has {channels} channel(s), expected RGB (3)")
    if image.shape[:2] != (size, size):
        raise DataError("wrong_size", where, f"image is {image.shape[1]}x{image.shape[0]}, expected {size}x{size}")
    return image


def check_box(box: np.ndarray, where: str) -> np.ndarray:
    box = np.asarray(box, dtype=np.float32)
    if box.shape != (4,):
        raise DataError("bad_box", where, f"box has shape {box.shape}, expected (4,)")
    if not np.isfinite(box).all():
        raise DataError("bad_box", where, f"box {box.tolist()} is not finite")
    x0, y0, x1, y1 = box.tolist()
    if min(box) < 0 or max(box) > 1:
        raise DataError("bad_box", where, f"box {box.tolist()} lies outside [0, 1]")
    if not (x0 < x1 and y0 < y1):
        raise DataError("bad_box", where, f"box {box.tolist()} is empty or inverted (need xmin < xmax, ymin < ymax)")
    return box


def check_keypoints(keypoints: np.ndarray, where: str) -> np.ndarray:
    keypoints = np.asarray(keypoints, dtype=np.float32)
    if keypoints.shape != (NUM_KEYPOINTS, 2):
        raise DataError("bad_keypoints", where,
                        f"keypoints have shape {keypoints.shape}, expected ({NUM_KEYPOINTS}, 2)")
    if not np.isfinite(keypoints).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(keypoints))[:, 0]})
        raise DataError("bad_keypoints", where, f"keypoints {bad} are NaN or infinite (mark absent points with -1)")
    return keypoints


def make_record(image: np.ndarray, box, keypoints, index: int, source: str) -> FaceRecord:
    """Check every field and build a ``FaceRecord``; raises ``DataError`` naming ``source`` and ``index``."""
    where = f"{source} [index {index}]"
    return FaceRecord(check_image(image, where), check_box(box, where), check_keypoints(keypoints, where), index,
                      source)


@dataclass
class FaceBatch:
    """A batch as the loader delivers it.

    image: ``(B, 3, S, S)`` uint8 (converted to float in [-1, 1] on the device by ``to_float_image``).
    box: ``(B, 4)``, keypoints: ``(B, 7, 2)``, index: ``(B,)`` int64 positions in the dataset.
    """

    image: torch.Tensor
    box: torch.Tensor
    keypoints: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return self.box.shape[0]

    def pin_memory(self) -> "FaceBatch":
        return FaceBatch(*(t.pin_memory() for t in (self.image, self.box, self.keypoints, self.index)))

    def as_photos(self) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Each crop as a photo with its one face, as a detector would report it: ``(S, S, 3)`` uint8 images,
        ``(1, 4)`` boxes and ``(1, 7, 2)`` keypoints in its pixels (absent: ``ABSENT``)."""
        size = self.image.shape[-1]
        images = list(self.image.permute(0, 2, 3, 1).cpu().numpy())
        boxes = [box[None].astype(np.float64) * size for box in self.box.cpu().numpy()]
        present = keypoints_present(self.keypoints.cpu()).numpy()[..., None]
        points = np.where(present, self.keypoints.cpu().numpy().astype(np.float64) * size, ABSENT)
        return images, boxes, [p[None] for p in points]


def collate(data: "FaceBatch | Sequence[FaceRecord]") -> FaceBatch:
    """Stack records into a ``FaceBatch`` (a ``FaceBatch`` from ``__getitems__`` passes through)."""
    if isinstance(data, FaceBatch):
        return data
    return FaceBatch(
        torch.from_numpy(np.stack([r.image.transpose(2, 0, 1) for r in data])),
        torch.from_numpy(np.stack([r.box for r in data])),
        torch.from_numpy(np.stack([r.keypoints for r in data])),
        torch.tensor([r.index for r in data], dtype=torch.int64),
    )


def to_float_image(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` uint8 -> float32 in [-1, 1]."""
    return image.float().mul_(1 / 127.5).sub_(1.0)


def to_uint8_image(image: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` float in [-1, 1] (clipped) -> uint8, rounded to the nearest level."""
    return ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
