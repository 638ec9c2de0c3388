"""Exponential moving average of the generator's weights (Karras et al., ICLR 2018)."""

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


def ema_beta(batch_size: int, half_life_images: float) -> float:
    """Decay per step so that an image's weight halves after ``half_life_images`` images."""
    return 0.5 ** (batch_size / half_life_images)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * model`` for parameters; buffers are copied."""
    # torch's own EMA update for AveragedModel: one foreach lerp over all parameters.
    get_ema_multi_avg_fn(beta)(list(ema.parameters()), [p.detach() for p in model.parameters()], None)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


@torch.no_grad()
def copy_weights(target: nn.Module, source: nn.Module) -> None:
    """Copy ``source``'s parameters and buffers into ``target`` (same architecture)."""
    for t, s in zip(target.state_dict().values(), source.state_dict().values(), strict=True):
        t.copy_(s)
