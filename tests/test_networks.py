import copy
import math

import pytest
import torch

from gan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
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
        generator, discriminator = Generator(GeneratorConfig(512), 128), Discriminator(DiscriminatorConfig(), 512, 128)
    assert count(generator) == pytest.approx(46.92e6, rel=2e-3)
    assert count(discriminator) == pytest.approx(45.53e6, rel=2e-3)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return Generator(GeneratorConfig(16), 128), Discriminator(DiscriminatorConfig(), 16, 128)


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
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))
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
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))
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
    generator, discriminator = Generator(GeneratorConfig(16), 32), Discriminator(DiscriminatorConfig(), 16, 32)
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
    plain, with_std = Discriminator(DiscriminatorConfig(), 16,
                                    16), Discriminator(DiscriminatorConfig(minibatch_std=True), 16, 16)
    channels = plain.channels[4]
    assert count(with_std) - count(plain) == 9 * channels  # one more input channel of the 3x3 conv at 4x4
    image, _, keypoints = face_batch(4, 16)
    scores = with_std(image, image, keypoints, resolution=16)
    assert scores.shape == (4, 1)
    # The stddev channel couples the samples of a group: changing one sample moves another's score.
    other = image.clone()
    other[1] += 1
    assert not torch.equal(with_std(other, image, keypoints, resolution=16)[0], scores[0])
    assert torch.equal(plain(other, image, keypoints, resolution=16)[0], plain(image, image, keypoints,
                                                                               resolution=16)[0])



# Outputs of the networks at fixed weights, in float64. The weights, inputs and latent are closed-form (sines of
# integers, biases 0), not drawn from torch's RNG, whose vectorised normal sampler may differ in the last bit between
# CPUs; the networks run in float64 so that summation order (which differs between ISAs: AVX2, AVX-512, NEON) moves
# a value by ~1e-16 relative per operation. These weights make the blank face region tiny, so the outputs are
# sensitive to PixelNorm's eps: float32 lands 7e-3 away from float64 here (a condition number of ~1e5), so float64
# rounding differences stay near 1e-11. ATOL = 1e-9 leaves two orders of magnitude for any CPU, while the smallest
# real changes checked when this was recorded move a value far more: pixel_norm_eps 1e-8 -> 1e-7 by 0.31, eps
# +1 % by 3.4e-4, to_rgb_gain +0.1 % by 2.9e-4, to_rgb_gain sqrt(2) -> 1 by 0.086.
GOLDEN_ATOL = 1e-9
GOLDEN = {  # (resolution, alpha): (G's centre pixel of both samples, 3 channels each; D's two scores)
    (32, 1.0): ([-0.115469988056, -0.208703113613, -0.153566370565, 0.216910369927, -0.049038800253,
                 -0.280125623513], [0.042914054295, 0.010844857716]),
    (32, 0.5): ([-0.188088090235, -0.219445267363, -0.094795833372, -0.294940551316, -0.274222165815,
                 -0.058555530590], [0.041083028785, 0.010569482985]),
    (16, 1.0): ([-0.163626027643, 0.029777606235, 0.202011936752, -0.248623136087, -0.209303810380,
                 -0.021187572605], [0.039151429135, 0.010144369843]),
}


def closed_form(module: torch.nn.Module) -> torch.nn.Module:
    """float64 weights sin(0.731 k + i) for the i-th parameter tensor (k its flat index); biases 0."""
    module.double()
    with torch.no_grad():
        for i, (name, parameter) in enumerate(module.named_parameters()):
            k = torch.arange(parameter.numel(), dtype=torch.float64)
            parameter.copy_((torch.sin(0.731 * k + i) * (not name.endswith("bias"))).reshape(parameter.shape))
    return module


@torch.no_grad()
def golden_outputs(**generator_options) -> dict:
    generator = closed_form(Generator(GeneratorConfig(16, **generator_options), 32))
    discriminator = closed_form(Discriminator(DiscriminatorConfig(), 16, 32))
    image = torch.sin(0.37 * torch.arange(2 * 3 * 32 * 32, dtype=torch.float64)).reshape(2, 3, 32, 32)
    mask = torch.zeros(2, 1, 32, 32, dtype=torch.float64)
    mask[..., 8:24, 8:24] = 1
    keypoints = (0.5 + 0.4 * torch.sin(torch.arange(28, dtype=torch.float64))).reshape(2, 7, 2)
    keypoints[:, 5:] = -1  # the shoulders are absent
    z = torch.cos(1.3 * torch.arange(2 * 32 * 4 * 4, dtype=torch.float64)).reshape(2, 32, 4, 4)
    outputs = {}
    for r, alpha in GOLDEN:
        x = torch.nn.functional.interpolate(image, size=(r, r), mode="area")
        m = torch.nn.functional.interpolate(mask, size=(r, r), mode="nearest")
        fake = generator(x * (1 - m), m, keypoints, z, resolution=r, alpha=alpha)
        scores = discriminator(x, x * (1 - m), keypoints, resolution=r, alpha=alpha)
        outputs[r, alpha] = (fake[:, :, r // 2, r // 2].flatten(), scores.flatten())
    return outputs


def test_golden_outputs_at_fixed_weights():
    for key, (fake, scores) in golden_outputs().items():
        g_expected, d_expected = (torch.tensor(v, dtype=torch.float64) for v in GOLDEN[key])
        torch.testing.assert_close(fake, g_expected, atol=GOLDEN_ATOL, rtol=0)
        torch.testing.assert_close(scores, d_expected, atol=GOLDEN_ATOL, rtol=0)


@pytest.mark.parametrize("options", [{"pixel_norm_eps": 1e-7}, {"pixel_norm_eps": 1.01e-8},
                                     {"to_rgb_gain": math.sqrt(2.0) * 1.001}])
def test_golden_outputs_catch_a_small_change_of_a_constant(options):
    changed = golden_outputs(**options)
    assert max((changed[key][0] - torch.tensor(GOLDEN[key][0], dtype=torch.float64)).abs().max()
               for key in GOLDEN) > 100 * GOLDEN_ATOL


def test_initialisation_is_the_equalized_learning_rate_one():
    """Weights N(0, 1) (the gain is applied at run time), biases 0; a golden test at fixed weights cannot see it."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(16), 32)
    weights = torch.cat([p.detach().flatten() for n, p in generator.named_parameters() if n.endswith("weight")])
    assert all(not p.any() for n, p in generator.named_parameters() if n.endswith("bias"))
    # 5 standard errors of the mean and of the standard deviation of N(0, 1) over this many values
    assert abs(float(weights.mean())) < 5 / weights.numel() ** 0.5
    assert abs(float(weights.std()) - 1) < 5 / (2 * weights.numel()) ** 0.5
