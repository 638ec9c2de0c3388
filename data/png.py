"""Decode one face PNG into a checked uint8 array, with errors that name the file and index."""

from pathlib import Path

import numpy as np
from PIL import Image

from data.record import DataError, check_image


def read_png(path: Path, where: str) -> np.ndarray:
    """``path`` -> ``(H, W, 3)`` uint8 RGB. Grayscale, palette and RGBA files are refused, not converted."""
    if not path.is_file():
        raise DataError("missing_image", where, f"no image file at {path}")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError("corrupt_image", where, f"cannot decode {path}: {error}") from error
    if mode != "RGB":
        raise DataError("wrong_channels", where, f"{path} has PIL mode {mode!r}, expected 'RGB'")
    return check_image(array, where)
