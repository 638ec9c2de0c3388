import torch

from data.augment import FaceAugment, flip_annotations
from gan.keypoints import keypoint_maps


def hand_made():
    image = torch.zeros(1, 3, 8, 8)
    image[0, 0, 2, 1] = 1.0  # a marked pixel at row 2, column 1
    box = torch.tensor([[0.125, 0.25, 0.5, 0.75]])
    keypoints = torch.tensor([[[0.3, 0.4], [0.2, 0.3], [0.6, 0.35], [0.0, 0.5], [0.9, 0.5], [-1.0, -1.0], [1.0, 0.2]]])
    return image, box, keypoints


def test_flip_mirrors_everything_and_swaps_labels():
    image, box, keypoints = hand_made()
    augment = FaceAugment(flip_probability=1.0)
    out_image, out_box, out_points = augment(image, box, keypoints)
    assert out_image[0, 0, 2, 6] == 1 and out_image.sum() == 1  # column 1 -> 8 - 1 - 1
    torch.testing.assert_close(out_box, torch.tensor([[0.5, 0.25, 0.875, 0.75]]))
    expected = torch.tensor([[
        [0.7, 0.4],            # nose stays the nose
        [0.4, 0.35],           # new left eye: the old right eye (0.6 -> 0.4)
        [0.8, 0.3],            # new right eye: the old left eye (0.2 -> 0.8)
        [0.1, 0.5],            # new left ear: the old right ear (0.9 -> 0.1)
        [1.0 - 2.0**-24, 0.5], # new right ear: the old left ear at x = 0 stays present, in the last column
        [1.0, 0.2],            # new left shoulder: the old right one, absent (x = 1) and still absent
        [-1.0, -1.0],          # new right shoulder: the old left one, absent
    ]])
    torch.testing.assert_close(out_points, expected)
    # The keypoint maps of the flipped sample are the mirrored maps with left/right channels swapped.
    maps, flipped_maps = keypoint_maps(keypoints, 8), keypoint_maps(out_points, 8)
    assert torch.equal(flipped_maps, maps.flip(-1)[:, [0, 2, 1, 4, 3, 6, 5]])


def test_flip_only_where_chosen():
    box = torch.tensor([[0.1, 0.2, 0.3, 0.4]] * 2)
    points = torch.rand(2, 7, 2)
    new_box, new_points = flip_annotations(box, points, torch.tensor([False, True]))
    assert torch.equal(new_box[0], box[0]) and torch.equal(new_points[0], points[0])
    assert not torch.equal(new_box[1], box[1])


def test_random_flip_annotations_follow_images():
    torch.manual_seed(0)
    image = torch.rand(64, 3, 8, 8) * 2 - 1
    box = torch.tensor([[0.0, 0.1, 0.25, 0.6]]).repeat(64, 1)
    out_image, out_box, _ = FaceAugment(flip_probability=0.5)(image, box, torch.rand(64, 7, 2))
    flipped = out_box[:, 0] > 0.5
    assert 10 < flipped.sum() < 54
    assert torch.equal(out_image[flipped], image[flipped].flip(-1))
    assert torch.equal(out_image[~flipped], image[~flipped])


def test_switches_and_jitter():
    image, box, keypoints = hand_made()
    same = FaceAugment(flip_probability=0.0, color_jitter=0.0)(image, box, keypoints)
    assert all(torch.equal(a, b) for a, b in zip(same, (image, box, keypoints), strict=True))
    torch.manual_seed(0)
    image = torch.rand(8, 3, 16, 16) * 2 - 1
    augment = FaceAugment(flip_probability=0.0, color_jitter=0.3, color_jitter_probability=1.0)
    jittered, _, _ = augment(image, box.repeat(8, 1), keypoints.repeat(8, 1, 1))
    assert not torch.allclose(jittered, image) and jittered.min() >= -1 and jittered.max() <= 1
