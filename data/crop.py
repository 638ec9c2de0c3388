"""Face crops the DeepPrivacy way: square the face box, grow it 35 % of its side on every side, shift
the window inside the photo (pad where it cannot fit), and area-resize to 128 px."""

import numpy as np
from PIL import Image

from data.keypoints import pixel_keypoints_present
from data.record import IMAGE_SIZE

EXPANSION = 0.35
# Share of the crop's side taken by the face box under this rule: 1 / (1 + 2 * 0.35) = 1 / 1.7.
FACE_FRACTION = 1 / (1 + 2 * EXPANSION)


def crop_window(box: np.ndarray, width: int, height: int, expansion: float = EXPANSION) -> np.ndarray:
    """Face box ``(x0, y0, x1, y1)`` in photo pixels -> square integer window ``(x0, y0, x1, y1)``.

    The window is shifted to lie inside the photo; only a window larger than the photo sticks out
    (and is padded when cropped).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * expansion)
    side = int(round(side))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    for start, limit in ((0, width), (1, height)):
        lo = left if start == 0 else top
        if side <= limit:
            lo = min(max(lo, 0), limit - side)
        else:
            lo = (limit - side) // 2  # centred, padded on both sides
        if start == 0:
            left = lo
        else:
            top = lo
    return np.array([left, top, left + side, top + side], dtype=np.int64)


def crop_face(
    photo: np.ndarray, box: np.ndarray, keypoints: np.ndarray, window: np.ndarray, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``window`` out of ``photo`` ``(H, W, 3)`` uint8 (zero padding outside), area-resize to ``size``.

    ``box`` ``(4,)`` and ``keypoints`` ``(7, 2)`` are in photo pixels (absent keypoints: any negative value or NaN).
    Returns the crop, the box normalised to [0, 1] inside it (clipped) and the normalised keypoints (-1 if absent).
    """
    x0, y0, x1, y1 = (int(v) for v in window)
    side = x1 - x0
    height, width = photo.shape[:2]
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = photo[sy0:sy1, sx0:sx1]
    resample = Image.Resampling.BOX if side >= size else Image.Resampling.BICUBIC
    crop = np.asarray(Image.fromarray(canvas).resize((size, size), resample))
    origin = np.array([x0, y0], dtype=np.float64)
    norm_box = ((np.asarray(box, dtype=np.float64).reshape(2, 2) - origin) / side).reshape(4).clip(0, 1)
    points = np.asarray(keypoints, dtype=np.float64)
    absent = ~pixel_keypoints_present(points)
    norm_points = (points - origin) / side
    outside = ((norm_points < 0) | (norm_points >= 1)).any(axis=1)
    norm_points[absent | outside] = -1
    return crop, norm_box.astype(np.float32), norm_points.astype(np.float32)
