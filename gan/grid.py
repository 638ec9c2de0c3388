"""Image grids for TensorBoard (a few lines instead of a torchvision dependency)."""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from data.keypoints import keypoints_present

# Keypoint colours on the condition tiles: the subject's left in blue, right in red, the nose in green; a flip
# that forgot to swap the labels shows as blue points on the image's left side.
KEYPOINT_COLOURS = {0: (0.0, 1.0, 0.0), 1: (0.2, 0.4, 1.0), 3: (0.2, 0.4, 1.0), 5: (0.2, 0.4, 1.0),
                    2: (1.0, 0.2, 0.2), 4: (1.0, 0.2, 0.2), 6: (1.0, 0.2, 0.2)}
HEADER = 14


def make_grid(images: torch.Tensor, columns: int, padding: int = 2, min_size: int = 64) -> torch.Tensor:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(3, H', W')`` float in [0, 1], row-major, upsampled (nearest) to
    ``min_size``."""
    if images.shape[-1] < min_size:
        images = F.interpolate(images.float(), scale_factor=min_size // images.shape[-1], mode="nearest")
    images = ((images.float() + 1) / 2).clamp(0, 1)
    count, channels, height, width = images.shape
    rows = -(-count // columns)
    grid = torch.ones(channels, rows * (height + padding) + padding, columns * (width + padding) + padding)
    for i, image in enumerate(images.cpu()):
        top, left = padding + (i // columns) * (height + padding), padding + (i % columns) * (width + padding)
        grid[:, top : top + height, left : left + width] = image
    return grid


def draw_keypoints(images: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """A copy of ``(N, 3, S, S)`` images in [-1, 1] with a 3x3 dot at every present keypoint ``(N, 7, 2)``."""
    out = images.clone()
    size = images.shape[-1]
    present = keypoints_present(keypoints)
    for n, k in present.nonzero().tolist():
        x, y = (keypoints[n, k] * size).floor().long().clamp(0, size - 1).tolist()
        colour = torch.tensor(KEYPOINT_COLOURS[k], dtype=out.dtype, device=out.device).view(3, 1, 1) * 2 - 1
        out[n, :, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = colour
    return out


def sample_grid(condition: torch.Tensor, generated: torch.Tensor, real: torch.Tensor, keypoints: torch.Tensor,
                triplets_per_row: int = 2, size: int = 64) -> torch.Tensor:
    """condition (keypoints drawn) | generated | real for each face, labelled in a header row: ``(3, H, W)`` in
    [0, 1]."""
    scale = max(size // condition.shape[-1], 1)
    up = [F.interpolate(t.float(), scale_factor=scale, mode="nearest") if scale > 1 else t.float()
          for t in (condition, generated, real)]
    up[0] = draw_keypoints(up[0], keypoints)
    grid = make_grid(torch.stack(up, dim=1).flatten(0, 1), columns=3 * triplets_per_row, min_size=size)
    tile = up[0].shape[-1] + 2
    canvas = Image.new("RGB", (grid.shape[2], grid.shape[1] + HEADER), "white")
    canvas.paste(Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)), (0, HEADER))
    draw = ImageDraw.Draw(canvas)
    for column in range(3 * triplets_per_row):
        draw.text((2 + column * tile + 2, 1), ("condition", "generated", "real")[column % 3], fill="black")
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255
