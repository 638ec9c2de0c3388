"""The 7 sparse keypoints of DeepPrivacy (Hukkelås et al., ISVC 2019) and their one-hot maps."""

import torch

# COCO order; "left" is the subject's left. The FDF README names the same indices from the viewer's side.
KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder")
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
# Index permutation that a horizontal flip applies: the subject's left becomes their right.
FLIP_PERMUTATION = (0, 2, 1, 4, 3, 6, 5)


def keypoints_present(keypoints: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` normalised points -> ``(...)`` bool: True where both coordinates lie in [0, 1).

    NaN compares False, so a NaN coordinate counts as absent.
    """
    inside = (keypoints >= 0) & (keypoints < 1)
    return inside.all(dim=-1)


def keypoint_maps(keypoints: torch.Tensor, resolution: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot keypoint maps.

    Args:
        keypoints: ``(B, K, 2)`` (x, y) normalised to [0, 1); a point outside [0, 1) or NaN is absent.
        resolution: side of the square maps.
        dtype: dtype of the returned maps.

    Returns:
        ``(B, K, resolution, resolution)``: channel k holds a single 1 at pixel
        ``(row=floor(y * resolution), col=floor(x * resolution))`` or all zeros when point k is absent.
    """
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (B, K, 2), got {tuple(keypoints.shape)}")
    batch, num_points, _ = keypoints.shape
    present = keypoints_present(keypoints)
    # floor(0.9999999 * r) can round to r in float32: clamp keeps such points in the last pixel.
    scaled = torch.nan_to_num(keypoints.float() * resolution, nan=0.0)
    pixel = scaled.floor().clamp(0, resolution - 1).long()
    flat_index = pixel[..., 1] * resolution + pixel[..., 0]
    maps = torch.zeros(batch * num_points, resolution * resolution, dtype=dtype, device=keypoints.device)
    maps.scatter_(1, flat_index.reshape(-1, 1), present.reshape(-1, 1).to(dtype))
    return maps.view(batch, num_points, resolution, resolution)
