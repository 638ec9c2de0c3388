"""Exponential moving average of the generator's weights (Karras et al., ICLR 2018)."""

import torch
from torch import nn


def ema_beta(batch_size: int, half_life_images: float) -> float:
    """Decay per step so that an image's weight halves after ``half_life_images`` images."""
    return 0.5 ** (batch_size / half_life_images)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * model`` for parameters; buffers are copied."""
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)


@torch.no_grad()
def copy_weights(target: nn.Module, source: nn.Module) -> None:
    """Copy ``source``'s parameters and buffers into ``target`` (same architecture)."""
    for t, s in zip(target.state_dict().values(), source.state_dict().values()):
        t.copy_(s)
