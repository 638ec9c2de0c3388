import torch

from gan.grid import HEADER, sample_grid


def test_sample_grid_is_labelled_and_shows_the_keypoints_by_side():
    condition = torch.zeros(2, 3, 16, 16)
    keypoints = torch.full((2, 7, 2), -1.0)
    keypoints[0, 1] = torch.tensor([0.75, 0.25])  # the subject's left eye: blue, on the image's right
    keypoints[0, 2] = torch.tensor([0.25, 0.25])  # right eye: red
    grid = sample_grid(condition, condition, condition, keypoints, triplets_per_row=2, size=64)
    assert grid.shape == (3, HEADER + 66 + 2, 6 * 66 + 2)
    tile = grid[:, HEADER + 2 : HEADER + 66, 2:66]  # the first condition tile, 64 px
    left_eye, right_eye = tile[:, 16, 48], tile[:, 16, 16]
    assert left_eye[2] > 0.9 and left_eye[0] < 0.7 and right_eye[0] > 0.9 and right_eye[2] < 0.7
    assert (grid[:, :HEADER] < 0.5).any()  # the labels are written in the header row
    assert torch.allclose(grid[:, HEADER + 2 : HEADER + 66, 68:132], torch.full((3, 64, 64), 0.5),
                          atol=1 / 255)  # uint8 levels
