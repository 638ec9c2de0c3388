import pytest
import torch

from data.record import to_float_image
from gan.conditioning import box_mask, condition_batch, downsample_to


def test_to_float_image_range_and_layout():
    image = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    out = to_float_image(image)
    assert out.shape == (2, 3, 4, 4)
    assert out[0, :, 0, 0].tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_box_mask_rounds_outwards():
    box = torch.tensor([[0.25, 0.5, 0.75, 1.0], [0.1, 0.1, 0.2, 0.2]])
    mask = box_mask(box, 8, "outward")
    assert mask.shape == (2, 1, 8, 8)
    expected = torch.zeros(8, 8)
    expected[4:8, 2:6] = 1
    assert torch.equal(mask[0, 0], expected)
    expected = torch.zeros(8, 8)
    expected[0:2, 0:2] = 1  # 0.1 * 8 = 0.8 -> floor 0; 0.2 * 8 = 1.6 -> ceil 2
    assert torch.equal(mask[1, 0], expected)


def test_area_downsampling_is_block_mean():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(downsample_to(image, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_condition_is_image_with_box_blanked(alpha):
    image = torch.rand(3, 3, 128, 128) * 2 - 1
    box = torch.tensor([[0.2, 0.3, 0.6, 0.9]] * 3)
    keypoints = torch.rand(3, 7, 2)
    batch = condition_batch(image, box, keypoints, 16, "outward", alpha)
    assert batch.image.shape == batch.condition.shape == (3, 3, 16, 16) and batch.mask.shape == (3, 1, 16, 16)
    hole = batch.mask.bool().expand_as(batch.image)
    assert (batch.condition[hole] == 0).all()
    assert torch.equal(batch.condition[~hole], batch.image[~hole])
    assert batch.keypoints is keypoints
    low = torch.nn.functional.interpolate(downsample_to(image, 8), scale_factor=2.0, mode="nearest")
    expected = torch.lerp(low, downsample_to(image, 16), alpha)
    torch.testing.assert_close(batch.image, expected)


def test_every_caller_names_its_box_rule():
    box = torch.tensor([[0.1, 0.1, 0.2, 0.2]])
    with pytest.raises(TypeError):
        box_mask(box, 8)  # no default: training names model.box_rounding, inference the export's rule
    with pytest.raises(ValueError, match="box rounding must be 'outward' or 'floor', got 'round'"):
        box_mask(box, 8, "round")
