"""Image grids for TensorBoard (a few lines instead of a torchvision dependency)."""

import torch
import torch.nn.functional as F


def make_grid(images: torch.Tensor, columns: int, padding: int = 2, min_size: int = 64) -> torch.Tensor:
    """``(N, 3, H, W)`` in [-1, 1] -> ``(3, H', W')`` float in [0, 1], row-major, upsampled (nearest) to ``min_size``."""
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
