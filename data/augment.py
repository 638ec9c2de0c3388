"""Augmentation on the device with kornia: a horizontal flip that keeps the annotation true, and colour jitter.

A flip mirrors the image, the box and the keypoints *and swaps the left/right keypoint labels*
(the subject's left eye becomes their right eye); DeepPrivacy's flip forgot the swap.
"""

import kornia.augmentation as K
import torch
from torch import nn

from data.keypoints import FLIP_PERMUTATION, keypoints_present

_BELOW_ONE = 1.0 - 2.0**-24  # largest float32 below 1: keeps a point at x = 0 present after mirroring


def flip_annotations(box: torch.Tensor, keypoints: torch.Tensor,
                     flipped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror ``(B, 4)`` boxes and ``(B, 7, 2)`` keypoints where ``flipped`` ``(B,)`` is True."""
    x0, y0, x1, y1 = box.unbind(-1)
    mirrored_box = torch.stack([1 - x1, y0, 1 - x0, y1], dim=-1)
    present = keypoints_present(keypoints)
    mirrored_x = torch.where(present, (1 - keypoints[..., 0]).clamp(max=_BELOW_ONE), keypoints[..., 0])
    mirrored = torch.stack([mirrored_x, keypoints[..., 1]], dim=-1)[:, list(FLIP_PERMUTATION)]
    choose = flipped.view(-1, 1)
    return torch.where(choose, mirrored_box, box), torch.where(choose.unsqueeze(-1), mirrored, keypoints)


class FaceAugment(nn.Module):
    """Random horizontal flip and optional colour jitter of a batch of face crops.

    Args:
        flip_probability: chance that a sample is mirrored (0 disables flipping).
        color_jitter: strength of brightness/contrast/saturation jitter (0 disables it); hue gets a tenth of it.
        color_jitter_probability: chance that a sample is jittered.
    """

    def __init__(self, flip_probability: float = 0.5, color_jitter: float = 0.0,
                 color_jitter_probability: float = 0.8) -> None:
        super().__init__()
        probabilities = (("flip_probability", flip_probability), ("color_jitter_probability", color_jitter_probability))
        for name, value in probabilities:
            if not 0 <= value <= 1:
                raise ValueError(f"augment.{name} must lie in [0, 1], got {value}")
        if not 0 <= color_jitter <= 0.5:
            raise ValueError(f"augment.color_jitter must lie in [0, 0.5], got {color_jitter}")
        self.flip = K.RandomHorizontalFlip(p=flip_probability) if flip_probability > 0 else None
        self.jitter = (
            K.ColorJitter(color_jitter, color_jitter, color_jitter, color_jitter / 10, p=color_jitter_probability)
            if color_jitter > 0
            else None
        )

    def forward(
        self, image: torch.Tensor, box: torch.Tensor, keypoints: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``image`` ``(B, 3, H, W)`` in [-1, 1], ``box`` ``(B, 4)``, ``keypoints`` ``(B, 7, 2)`` -> the same,
        augmented."""
        if self.flip is not None:
            params = self.flip.forward_parameters(image.shape)  # drawn as forward would draw them, and kept
            image = self.flip(image, params=params)
            flipped = params["batch_prob"].to(image.device).bool()
            box, keypoints = flip_annotations(box, keypoints, flipped)
        if self.jitter is not None:
            image = self.jitter((image + 1) / 2).mul(2).sub(1)
        return image, box, keypoints
