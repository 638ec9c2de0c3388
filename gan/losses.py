"""WGAN-GP losses with ProGAN's epsilon drift (Gulrajani et al. 2017; Karras et al. 2018). Pure functions."""

from collections.abc import Callable

import torch


def wgan_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Critic loss ``mean(D(fake)) - mean(D(real))``."""
    return fake_scores.float().mean() - real_scores.float().mean()


def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Generator loss ``-mean(D(G(c)))``."""
    return -fake_scores.float().mean()


def epsilon_penalty(real_scores: torch.Tensor) -> torch.Tensor:
    """Drift penalty ``mean(D(real)^2)`` that keeps the critic's scores near 0."""
    return real_scores.float().square().mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    epsilon: torch.Tensor | None = None,
    scale: float = 1.0,
) -> torch.Tensor:
    """Two-sided penalty ``mean((||grad_x D(x_hat)||_2 - 1)^2)`` on ``x_hat = e * real + (1 - e) * fake``.

    Args:
        critic: maps images ``(B, 3, H, W)`` to scores ``(B, 1)`` (condition and keypoints bound).
        real, fake: ``(B, 3, H, W)``; ``fake`` should be detached.
        epsilon: ``(B, 1, 1, 1)`` interpolation weights; drawn from U(0, 1) when None.
        scale: loss scale under fp16 autocast. The critic's gradient is taken of ``scale * scores`` so
            that it does not underflow in fp16, then divided by ``scale`` in fp32 (the AMP recipe for
            gradient penalties); a scale that overflows gives a non-finite penalty, and the step is skipped.
    """
    if epsilon is None:
        epsilon = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=torch.float32)
    x_hat = torch.lerp(fake.detach().float(), real.detach().float(), epsilon).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.float().sum() * scale, x_hat, create_graph=True)
    grad = grad.float() / scale
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()
