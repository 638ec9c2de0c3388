"""Building blocks of Progressive GAN (Karras et al., ICLR 2018) as used by DeepPrivacy.

Equalized learning rate: weights are drawn from N(0, 1) and scaled at run time by
``gain / sqrt(fan_in)``, so Adam sees every weight on the same scale.
"""

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn


class EqualizedConv2d(nn.Module):
    """Conv2d with equalized learning rate. ``(B, in, H, W) -> (B, out, H', W')``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        gain: float = math.sqrt(2.0),
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        out_channels, in_channels, kernel, _ = self.weight.shape
        return f"{in_channels}, {out_channels}, kernel_size={kernel}, padding={self.padding}"


class EqualizedLinear(nn.Module):
    """Linear layer with equalized learning rate. ``(B, in) -> (B, out)``."""

    def __init__(self, in_features: int, out_features: int, gain: float = math.sqrt(2.0)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """Normalise the feature vector of every pixel to unit mean square (eps 1e-8 in DeepPrivacy 2019, 1e-7 in its
    current code).

    The mean square is taken in fp32: in fp16, eps = 1e-8 rounds to 0 and an all-zero feature vector
    (the blanked face region) would give 0 * inf = NaN.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.float().square().mean(dim=1, keepdim=True) + self.eps).to(x.dtype)


class MinibatchStdDev(nn.Module):
    """Append one channel: the mean standard deviation of the features over groups of samples.

    ``(B, C, H, W) -> (B, C + 1, H, W)``; B must be divisible by the group size (or smaller than it).
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        group = min(self.group_size, batch)
        if batch % group != 0:
            raise ValueError(f"MinibatchStdDev: batch size {batch} is not divisible by group size {group}")
        grouped = x.view(group, batch // group, channels, height, width).float()
        std = (grouped.var(dim=0, unbiased=False) + self.eps).sqrt()  # (B/G, C, H, W)
        feature = std.mean(dim=(1, 2, 3)).view(batch // group, 1, 1, 1).to(x.dtype)
        feature = feature.repeat(group, 1, height, width)
        return torch.cat([x, feature], dim=1)


class ConvAct(nn.Sequential):
    """Equalized conv -> LeakyReLU(0.2) -> PixelNorm with ``pixel_norm_eps`` (None: no PixelNorm)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pixel_norm_eps: float | None) -> None:
        layers: list[nn.Module] = [
            EqualizedConv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.LeakyReLU(0.2),
        ]
        if pixel_norm_eps is not None:
            layers.append(PixelNorm(pixel_norm_eps))
        super().__init__(*layers)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve the resolution by 2x2 average pooling."""
    return F.avg_pool2d(x, kernel_size=2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Double the resolution by nearest-neighbour repetition."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def fade_paths(alpha: float | torch.Tensor) -> tuple[bool, bool]:
    """Which paths a fade weight needs: (the new resolution's, the half resolution's).

    A float decides by its value (0: the half-resolution path only, 1: the new path only). A 0-dim tensor is never
    read on the host, so a compiled graph takes it as an input and does not recompile when it changes: both paths
    run and are blended, as for 0 < alpha < 1.
    """
    if torch.is_tensor(alpha):
        return True, True
    return alpha > 0, alpha < 1


def blend(old: torch.Tensor, new: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """``lerp(old, new, alpha)``; a tensor alpha is cast to the features' dtype (bf16/fp16 under autocast)."""
    return torch.lerp(old, new, alpha.to(old.dtype) if torch.is_tensor(alpha) else alpha)


def fade_image(x: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Blend an image with its half-resolution version, as the networks blend their paths.

    ``alpha = 0`` gives ``upsample(downsample(x))``, ``alpha = 1`` gives ``x`` itself.
    """
    if not fade_paths(alpha)[1]:
        return x
    return blend(upsample(downsample(x)), x, alpha)


def per_resolution(build: Callable[[int], nn.Module], resolutions: Iterable[int]) -> nn.ModuleDict:
    """``{str(r): build(r)}``: one block per resolution, keyed as ``forward`` selects them."""
    return nn.ModuleDict({str(r): build(r) for r in resolutions})
