import pytest
import torch

from data.keypoints import FLIP_PERMUTATION, KEYPOINT_NAMES
from gan.keypoints import keypoint_maps


def single(x: float, y: float, resolution: int) -> torch.Tensor:
    points = torch.full((1, 7, 2), -1.0)
    points[0, 0] = torch.tensor([x, y])
    return keypoint_maps(points, resolution)[0]


def test_centre_point_lands_in_floor_pixel():
    maps = single(0.5, 0.25, 8)
    assert maps.shape == (7, 8, 8)
    assert maps[0].sum() == 1 and maps[0, 2, 4] == 1  # row = floor(0.25 * 8), col = floor(0.5 * 8)
    assert maps[1:].sum() == 0


def test_point_just_below_one_is_last_pixel():
    maps = single(0.999, 0.999, 16)
    assert maps[0, 15, 15] == 1 and maps[0].sum() == 1
    maps = single(1.0 - 2.0**-24, 0.0, 128)  # the largest float32 below 1
    assert maps[0, 0, 127] == 1


@pytest.mark.parametrize("x, y", [(1.0, 0.5), (0.5, 1.0), (-0.01, 0.5), (0.5, -1.0), (float("nan"), 0.5),
                                  (float("inf"), 0.2)])
def test_absent_points_give_zero_channel(x, y):
    assert single(x, y, 32).sum() == 0


def test_batched_maps_match_per_sample():
    points = torch.rand(5, 7, 2) * 1.2 - 0.1  # some absent
    maps = keypoint_maps(points, 16)
    for b in range(5):
        for k in range(7):
            x, y = points[b, k].tolist()
            expected = torch.zeros(16, 16)
            if 0 <= x < 1 and 0 <= y < 1:
                expected[int(y * 16), int(x * 16)] = 1
            assert torch.equal(maps[b, k], expected)


def test_dtype_and_bad_shape():
    assert keypoint_maps(torch.rand(2, 7, 2), 8, dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        keypoint_maps(torch.rand(7, 2), 8)


def test_flip_permutation_swaps_left_and_right():
    for index, name in enumerate(KEYPOINT_NAMES):
        mirrored = KEYPOINT_NAMES[FLIP_PERMUTATION[index]]
        assert mirrored == name.replace("left", "#").replace("right", "left").replace("#", "right")
