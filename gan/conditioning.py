"""What the networks are given: a batch conditioned at a stage resolution, on the device (DeepPrivacy, ISVC 2019).

From face crops in [-1, 1]: area-downsample to the stage resolution, fade with the half resolution while
alpha < 1 (as the networks fade their paths), build the mask from the face box, and blank the box.
Training, FID, sample grids and the anonymizer all condition through ``condition_batch``.
"""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from gan.layers import fade_image


@dataclass
class Conditioned:
    """A batch ready for G and D at one resolution r.

    image: ``(B, 3, r, r)`` in [-1, 1] (the real faces); condition: ``image`` with the mask filled with 0;
    mask: ``(B, 1, r, r)``, 1 inside the face box; keypoints: ``(B, 7, 2)`` unchanged.
    """

    image: torch.Tensor
    condition: torch.Tensor
    mask: torch.Tensor
    keypoints: torch.Tensor


Rounding = Literal["outward", "floor"]
ROUNDINGS = ("outward", "floor")


def check_rounding(rounding: str) -> Rounding:
    if rounding not in ROUNDINGS:
        raise ValueError(f"box rounding must be 'outward' or 'floor', got {rounding!r}")
    return rounding  # type: ignore[return-value]


def box_pixels(box: torch.Tensor, resolution: int, rounding: Rounding,
               jitter: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 4)`` normalised xyxy boxes -> (start, end) ``(B, 2)`` whole pixels at ``resolution``, end exclusive.

    rounding: ``floor`` floors both ends (DeepPrivacy's dataset rule, the paper's recipe: up to 1 px smaller at
        8-32 px); ``outward`` floors the start and ceils the end, so no face pixel is left outside. There is no
        default: training names ``model.box_rounding``, and whatever conditions a trained generator (FID, the
        anonymizer, the privacy report) uses the rule it was trained with (an export's
        ``conditioning.box_rounding``).
    jitter: ``(B,)`` factors s in [-p, p] (DeepPrivacy's training augmentation, p = 2 %): each side moves out by
        ``trunc(s * side)`` whole pixels (in by that much for s < 0), keeping the centre; then clipped to the image.
    """
    pixels = box.float() * resolution
    if check_rounding(rounding) == "outward":
        start, end = pixels[:, :2].floor(), pixels[:, 2:].ceil()
    else:
        start, end = pixels[:, :2].floor(), pixels[:, 2:].floor()
    if jitter is not None:
        delta = (jitter.float().view(-1, 1) * (end - start)).trunc()
        start, end = (start - delta).clamp(0, resolution), (end + delta).clamp(0, resolution)
    return start, end


def box_mask(box: torch.Tensor, resolution: int, rounding: Rounding,
             jitter: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, 4)`` normalised xyxy boxes -> ``(B, 1, r, r)`` float mask, 1 on the box's pixels (see ``box_pixels``)."""
    start, end = box_pixels(box, resolution, rounding, jitter)
    grid = torch.arange(resolution, device=box.device, dtype=torch.float32)
    inside_x = ((grid >= start[:, 0:1]) & (grid < end[:, 0:1])).float()  # (B, r)
    inside_y = ((grid >= start[:, 1:2]) & (grid < end[:, 1:2])).float()
    return (inside_y[:, None, :, None] * inside_x[:, None, None, :])


def downsample_to(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """Area (box-filter) downsampling of ``(B, C, S, S)`` to ``(B, C, r, r)``."""
    if image.shape[-1] == resolution:
        return image
    return F.interpolate(image, size=(resolution, resolution), mode="area")


def condition_batch(
    image: torch.Tensor, box: torch.Tensor, keypoints: torch.Tensor, resolution: int, rounding: Rounding,
    alpha: float = 1.0, jitter: torch.Tensor | None = None,
) -> Conditioned:
    """``image`` ``(B, 3, S, S)`` float in [-1, 1] -> the ``Conditioned`` batch at ``resolution``; ``rounding`` and
    ``jitter`` place the box (``box_pixels``)."""
    real = fade_image(downsample_to(image, resolution), alpha)
    mask = box_mask(box, resolution, rounding, jitter).to(real.dtype)
    condition = real * (1 - mask)  # real is finite (it comes from uint8), so the box becomes exactly 0
    return Conditioned(real, condition, mask, keypoints)
