import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def face_batch(batch: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random images in [-1, 1], a centred face-box mask and random keypoints."""
    image = torch.rand(batch, 3, resolution, resolution) * 2 - 1
    mask = torch.zeros(batch, 1, resolution, resolution)
    lo, hi = resolution // 4, 3 * resolution // 4
    mask[..., lo:hi, lo:hi] = 1
    keypoints = torch.rand(batch, 7, 2)
    keypoints[:, 5:] = -1  # shoulders absent, as in most FDF faces
    return image, mask, keypoints
