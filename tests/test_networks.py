import copy

import pytest
import torch

from gan import Discriminator, Generator
from gan.channels import channel_table
from tests.datasets import face_batch

RESOLUTIONS = [8, 16, 32, 64, 128]


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())


def test_channel_table_of_paper_model():
    assert channel_table(512, 128) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128}
    assert channel_table(720, 128) == {4: 720, 8: 720, 16: 720, 32: 720, 64: 360, 128: 176}


def test_parameter_parity_with_paper_model():
    with torch.device("meta"):
        generator, discriminator = Generator(512, 128), Discriminator(512, 128)
    assert count(generator) == pytest.approx(46.92e6, rel=2e-3)
    assert count(discriminator) == pytest.approx(45.53e6, rel=2e-3)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return Generator(base_width=16, max_resolution=128), Discriminator(base_width=16, max_resolution=128)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("batch", [1, 3])
def test_shapes(nets, resolution, alpha, batch):
    generator, discriminator = nets
    image, mask, keypoints = face_batch(batch, resolution)
    fake = generator(image, mask, keypoints, resolution=resolution, alpha=alpha)
    assert fake.shape == (batch, 3, resolution, resolution)
    assert torch.isfinite(fake).all()
    score = discriminator(fake, image, keypoints, resolution=resolution, alpha=alpha)
    assert score.shape == (batch, 1)


def perturb(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))


def outputs(nets, resolution, alpha):
    generator, discriminator = nets
    torch.manual_seed(1)
    image, mask, keypoints = face_batch(2, resolution)
    z = torch.randn(2, 32, 4, 4)
    fake = generator(image, mask, keypoints, z, resolution=resolution, alpha=alpha)
    return fake, discriminator(image, image, keypoints, resolution=resolution, alpha=alpha)


@pytest.mark.parametrize("resolution", [8, 32, 128])
def test_alpha_one_ignores_old_path(nets, resolution):
    old = str(resolution // 2)
    before = outputs(nets, resolution, 1.0)
    changed = copy.deepcopy(nets)
    perturb(changed[0].from_rgb[old]), perturb(changed[0].to_rgb[old]), perturb(changed[1].from_rgb[old])
    after = outputs(changed, resolution, 1.0)
    assert all(torch.equal(b, a) for b, a in zip(before, after))
    assert not torch.equal(before[0], outputs(changed, resolution, 0.5)[0])  # the probe does reach it


@pytest.mark.parametrize("resolution", [8, 32, 128])
def test_alpha_zero_ignores_new_block(nets, resolution):
    new = str(resolution)
    before = outputs(nets, resolution, 0.0)
    changed = copy.deepcopy(nets)
    for part in (changed[0].from_rgb, changed[0].encoder, changed[0].decoder, changed[0].to_rgb):
        perturb(part[new])
    perturb(changed[1].from_rgb[new]), perturb(changed[1].blocks[new])
    after = outputs(changed, resolution, 0.0)
    assert all(torch.equal(b, a) for b, a in zip(before, after))
    assert not torch.equal(before[1], outputs(changed, resolution, 0.5)[1])


@pytest.mark.parametrize("resolution", [8, 64])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_output_ignores_pixels_inside_mask(nets, resolution, alpha):
    generator = nets[0]
    image, mask, keypoints = face_batch(2, resolution)
    z = torch.randn(2, 32, 4, 4)
    condition = image * (1 - mask)
    reference = generator(condition, mask, keypoints, z, resolution=resolution, alpha=alpha)
    hole = mask.bool().expand_as(image)
    for inside in (image, torch.randn_like(image) * 100, torch.zeros_like(image), torch.full_like(image, float("nan"))):
        leaked = torch.where(hole, inside, condition)
        out = generator(leaked, mask, keypoints, z, resolution=resolution, alpha=alpha)
        assert torch.equal(out, reference)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_pixels_outside_mask_equal_condition(nets, alpha):
    image, mask, keypoints = face_batch(3, 32)
    out = nets[0](image, mask, keypoints, resolution=32, alpha=alpha)
    keep = ~mask.bool().expand_as(image)
    assert torch.equal(out[keep], image[keep])
    assert not torch.equal(out[~keep], image[~keep])


def test_z_changes_the_face(nets):
    image, mask, keypoints = face_batch(2, 16)
    a = nets[0](image, mask, keypoints, torch.zeros(2, 32, 4, 4), resolution=16)
    b = nets[0](image, mask, keypoints, torch.randn(2, 32, 4, 4), resolution=16)
    assert not torch.equal(a, b)


def active_parameters(resolution: int, alpha: float) -> tuple[set[str], set[str]]:
    """Prefixes of the parameters on the active path of G and D, by the architecture's definition."""
    top = resolution if alpha > 0 else resolution // 2
    blocks = [r for r in (8, 16, 32, 64, 128) if r <= top]
    g = {"bottleneck", *(f"encoder.{r}" for r in blocks), *(f"decoder.{r}" for r in blocks)}
    d = {"final", *(f"blocks.{r}" for r in blocks)}
    entries = ([resolution] if alpha > 0 else []) + ([resolution // 2] if alpha < 1 else [])
    g |= {f"{part}.{r}" for r in entries for part in ("from_rgb", "to_rgb")}
    d |= {f"from_rgb.{r}" for r in entries}
    return g, d


@pytest.mark.parametrize("resolution, alpha", [(8, 1.0), (8, 0.5), (16, 0.0), (16, 0.5), (32, 1.0), (32, 0.0)])
def test_gradients_reach_exactly_the_active_path(resolution, alpha):
    generator, discriminator = Generator(16, 32), Discriminator(16, 32)
    image, mask, keypoints = face_batch(2, resolution)
    fake = generator(image, mask, keypoints, resolution=resolution, alpha=alpha)
    discriminator(fake, image, keypoints, resolution=resolution, alpha=alpha).sum().backward()
    expected_g, expected_d = active_parameters(resolution, alpha)
    for net, expected in ((generator, expected_g), (discriminator, expected_d)):
        for name, p in net.named_parameters():
            active = any(name.startswith(prefix + ".") for prefix in expected)
            assert (p.grad is not None and p.grad.abs().sum() > 0) == active, name


@pytest.mark.parametrize("resolution, alpha", [(4, 1.0), (12, 1.0), (256, 1.0), (16, 1.5), (16, -0.1)])
def test_bad_stage_is_refused(nets, resolution, alpha):
    image, mask, keypoints = face_batch(1, 16)
    with pytest.raises(ValueError, match="resolution|alpha"):
        nets[0](image, mask, keypoints, resolution=resolution, alpha=alpha)


def test_wrong_condition_size_is_refused(nets):
    image, mask, keypoints = face_batch(1, 16)
    with pytest.raises(ValueError, match="condition"):
        nets[0](image, mask, keypoints, resolution=32)


def test_minibatch_std_option():
    plain, with_std = Discriminator(16, 16), Discriminator(16, 16, minibatch_std=True)
    channels = plain.channels[4]
    assert count(with_std) - count(plain) == 9 * channels  # one more input channel of the 3x3 conv at 4x4
    image, _, keypoints = face_batch(4, 16)
    scores = with_std(image, image, keypoints, resolution=16)
    assert scores.shape == (4, 1)
    # The stddev channel couples the samples of a group: changing one sample moves another's score.
    other = image.clone()
    other[1] += 1
    assert not torch.equal(with_std(other, image, keypoints, resolution=16)[0], scores[0])
    assert torch.equal(plain(other, image, keypoints, resolution=16)[0], plain(image, image, keypoints, resolution=16)[0])



# Outputs of the networks at a fixed seed: a change that alters what G or D compute (an initialisation, a
# layer order, a constant) shows up here. Recorded with the paper's gains (sqrt(2) on to_rgb and on the critic's
# output); with the gains of format 1 (1.0) every value was exactly these / sqrt(2).
GOLDEN = {
    (32, 1.0): ([-0.360198, -0.632964, 2.386961, -1.260849, -1.031888, 0.528455], [-0.189283, -0.152839]),
    (32, 0.5): ([0.169982, -0.261094, 1.465845, -1.494779, -0.873016, 0.425462], [-0.18824, -0.111885]),
    (16, 1.0): ([0.948383, -0.51635, -1.530613, 0.800201, -1.557135, -0.482431], [-0.187207, -0.117811]),
}


@torch.no_grad()
def test_golden_outputs_at_a_fixed_seed():
    torch.manual_seed(0)
    generator, discriminator = Generator(16, 32), Discriminator(16, 32)
    rng = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, 32, 32, generator=rng) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    keypoints = torch.rand(2, 7, 2, generator=rng)
    keypoints[:, 5:] = -1
    z = torch.randn(2, 32, 4, 4, generator=rng)
    for (r, alpha), (g_expected, d_expected) in GOLDEN.items():
        x = torch.nn.functional.interpolate(image, size=(r, r), mode="area")
        m = torch.nn.functional.interpolate(mask, size=(r, r), mode="nearest")
        fake = generator(x * (1 - m), m, keypoints, z, resolution=r, alpha=alpha)
        scores = discriminator(x, x * (1 - m), keypoints, resolution=r, alpha=alpha)
        torch.testing.assert_close(fake[:, :, r // 2, r // 2].flatten(), torch.tensor(g_expected), atol=2e-6, rtol=0)
        torch.testing.assert_close(scores.flatten(), torch.tensor(d_expected), atol=2e-6, rtol=0)
