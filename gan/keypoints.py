"""One-hot keypoint maps, the networks' view of the 7 keypoints (DeepPrivacy, ISVC 2019).

The convention itself (names, order, absent rule) is the data contract in ``data.keypoints``.
"""

import torch

from data.keypoints import keypoints_present


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
