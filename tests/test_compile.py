"""``model.compile`` and ``model.fused_adam``: what they compile, read back and compute.

Dynamo's tracing and guards are what decide recompiles, whatever the backend: these tests trace with the real
``torch.compile`` and run the graphs with the ``eager`` / ``aot_eager`` backends (inductor's C++ build takes about a
minute per graph on a CPU; ``bench/gpu_step.py`` runs it).
"""

from collections import Counter

import pytest
import torch

import train
from gan.discriminator import Discriminator, DiscriminatorConfig
from gan.generator import Generator, GeneratorConfig
from gan.training.module import DeepPrivacyGAN
from tests.helpers import CompileLog

# 8 px for 2 steps, 16 px fading in over 6 steps (alpha 0, 1/6, ..., 5/6), 16 px stabilising for 4.
FADING = ["--model.schedule.max_resolution", "16", "--model.schedule.fade_images", "48",
          "--model.schedule.batch_sizes", "{8: 8, 16: 8}", "--export_onnx", "false"]


def weights_after(tmp_path, tiny_config, name: str, flags: list[str]) -> dict:
    config = tiny_config(tmp_path / name, total=96, callbacks=[
        {"class_path": "tests.helpers.DumpWeights", "init_args": {"folder": str(tmp_path / name / "w")}},
        {"class_path": "tests.helpers.CompileLog"}])
    assert train.main(["--config", str(config), *FADING, *flags]) == 0
    return torch.load(tmp_path / name / "w" / "rank0.pt")


def test_a_tensor_alpha_computes_what_the_float_computes():
    G, D = Generator(GeneratorConfig(16, latent_channels=8), 32), Discriminator(DiscriminatorConfig(), 16, 32)
    condition, keypoints, z = torch.randn(4, 3, 16, 16), torch.rand(4, 7, 2), torch.randn(4, 8, 4, 4)
    mask = torch.zeros(4, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    for alpha in (0.01, 0.3, 0.7):
        assert torch.equal(G(condition, mask, keypoints, z, resolution=16, alpha=torch.tensor(alpha)),
                           G(condition, mask, keypoints, z, resolution=16, alpha=alpha))
        assert torch.equal(D(condition, condition, keypoints, resolution=16, alpha=torch.tensor(alpha)),
                           D(condition, condition, keypoints, resolution=16, alpha=alpha))
    with pytest.raises(ValueError, match="0-dim"):
        G(condition, mask, keypoints, z, resolution=16, alpha=torch.tensor([0.5]))


def test_one_graph_per_network_resolution_phase_and_grad_mode(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(DeepPrivacyGAN, "compile_backend", staticmethod(CompileLog.backend))
    weights_after(tmp_path, tiny_config, "compiled", ["--model.compile", "true"])
    by_stage = {}
    for resolution, phase, seen, network, grad in CompileLog.compiles:
        by_stage.setdefault((resolution, phase), []).append((seen, network, grad))
    assert list(by_stage) == [(8, "stabilize"), (16, "fade"), (16, "stabilize")]
    for stage, compiles in by_stage.items():
        # G without a graph (the critic's fake) and with one (the G step); D in the critic step and in the G step.
        assert Counter((network, grad) for _, network, grad in compiles) == {
            ("G", False): 1, ("G", True): 1, ("D", True): 2}, stage
    # All at the first compiled step of a stage: the five fade steps with five alphas share one graph each.
    # The fade's first step (alpha = 0, 16 images) runs eagerly.
    assert {stage: {seen for seen, _, _ in c} for stage, c in by_stage.items()} == {
        (8, "stabilize"): {0}, (16, "fade"): {24}, (16, "stabilize"): {64}}


def test_a_compiled_step_computes_what_the_eager_step_computes():
    """A fade step's forward and backward through graphs AOTAutograd built (decomposed ops, run by eager kernels).

    Tolerance: float32 rounding. Decomposed ops (lerp, leaky_relu's backward, the equalized-lr scaling) may round
    the last bit differently and sums may run in another order, so values agree to ~1e-6 relative, not bitwise.
    Compared on gradients, not on weights after Adam: with beta1 = 0 an early Adam step is close to lr * sign(g),
    so a last-bit change of a near-zero gradient moves a weight by up to 2 lr, whatever the compiler.
    """
    torch.manual_seed(0)
    G, D = Generator(GeneratorConfig(16, latent_channels=8), 32), Discriminator(DiscriminatorConfig(), 16, 32)
    condition, keypoints, z = torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(4, 7, 2), torch.randn(4, 8, 4, 4)
    mask = torch.zeros(4, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    options = dict(backend="aot_eager", dynamic=False, fullgraph=True)
    results = []
    for generate, critic in ((G.forward, D.forward), (torch.compile(G.forward, **options), torch.compile(D.forward,
                                                                                                         **options))):
        G.zero_grad(), D.zero_grad()
        fake = generate(condition, mask, keypoints, z, resolution=16, alpha=torch.tensor(0.3), composite=False)
        scores = critic(fake, condition, keypoints, resolution=16, alpha=torch.tensor(0.3))
        scores.mean().backward()
        grads = torch.cat([p.grad.flatten() for net in (G, D) for p in net.parameters() if p.grad is not None])
        results.append((fake.detach(), scores.detach(), grads))
    for compiled, eager in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
