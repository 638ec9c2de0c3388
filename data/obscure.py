"""The classic ways to hide a face, the baselines a generated face is compared with: Gaussian blur,
pixelation and a black box, each applied inside a pixel box of an ``(H, W, 3)`` uint8 image."""

import numpy as np
from PIL import Image, ImageFilter


def pixel_box(box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """xyxy box (float pixels) -> the integer pixels it touches, clipped to the image; None if none."""
    x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x1, y1 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def blur(image: np.ndarray, box, sigma_fraction: float = 1 / 8) -> np.ndarray:
    """A copy of ``image`` with a Gaussian blur of sigma = ``sigma_fraction`` x the box's longer side inside it."""
    out = image.copy()
    x0, y0, x1, y1 = box
    sigma = max(1.0, max(x1 - x0, y1 - y0) * sigma_fraction)
    # Blur a window 3 sigma larger than the box, then keep the box: pixels near its edge average with their
    # true surroundings, as in a blurred photo.
    height, width = image.shape[:2]
    m = int(np.ceil(3 * sigma))
    wx0, wy0, wx1, wy1 = max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, width), min(y1 + m, height)
    window = Image.fromarray(np.ascontiguousarray(image[wy0:wy1, wx0:wx1]))
    blurred = np.asarray(window.filter(ImageFilter.GaussianBlur(sigma)))
    out[y0:y1, x0:x1] = blurred[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]
    return out


def pixelate(image: np.ndarray, box, cells: int = 8) -> np.ndarray:
    """A copy of ``image`` with the box replaced by a ``cells`` x ``cells`` mosaic of its block means."""
    out = image.copy()
    x0, y0, x1, y1 = box
    region = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    mosaic = region.resize((cells, cells), Image.Resampling.BOX).resize(region.size, Image.Resampling.NEAREST)
    out[y0:y1, x0:x1] = np.asarray(mosaic)
    return out


def black_box(image: np.ndarray, box) -> np.ndarray:
    """A copy of ``image`` with the box filled with black."""
    out = image.copy()
    x0, y0, x1, y1 = box
    out[y0:y1, x0:x1] = 0
    return out
