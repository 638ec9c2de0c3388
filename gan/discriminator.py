"""DeepPrivacy's progressive conditional discriminator (Hukkelås et al., ISVC 2019).

Mirrors the generator's encoder: input ``concat(image, condition)``, the keypoint maps concatenated
before every block, the same ``resolution`` / ``alpha`` selection of the active path.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from data.keypoints import NUM_KEYPOINTS
from gan.channels import LATENT_RESOLUTION, channel_table, check_stage, discriminator_base_width, trained_resolutions
from gan.keypoints import keypoint_maps
from gan.layers import (
    ConvAct,
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    blend,
    downsample,
    fade_paths,
    per_resolution,
)


class DiscriminatorBlock(nn.Module):
    """concat(x, keypoint maps) -> conv3x3 (in + 7 -> in) -> conv3x3 (in -> out) -> AvgPool 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvAct(in_channels + NUM_KEYPOINTS, in_channels, 3, pixel_norm_eps=None)
        self.conv2 = ConvAct(in_channels, out_channels, 3, pixel_norm_eps=None)

    def forward(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        return downsample(self.conv2(self.conv1(torch.cat([x, maps], dim=1))))


class FinalBlock(nn.Module):
    """At 4x4: [minibatch stddev], concat keypoint maps, conv3x3, conv4x4 valid, linear -> 1 score."""

    def __init__(self, channels: int, minibatch_std: bool, output_gain: float = math.sqrt(2.0)) -> None:
        super().__init__()
        self.minibatch_std = MinibatchStdDev() if minibatch_std else None
        extra = NUM_KEYPOINTS + (1 if minibatch_std else 0)
        self.conv1 = ConvAct(channels + extra, channels, 3, pixel_norm_eps=None)
        self.conv2 = nn.Sequential(EqualizedConv2d(channels, channels, LATENT_RESOLUTION), nn.LeakyReLU(0.2))
        self.linear = EqualizedLinear(channels, 1, gain=output_gain)

    def forward(self, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        if self.minibatch_std is not None:
            x = self.minibatch_std(x)
        x = self.conv2(self.conv1(torch.cat([x, maps], dim=1)))
        return self.linear(x.flatten(1))


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The critic's architecture: the ``model.critic`` section, and ``architecture.critic`` in checkpoints. Its
    width follows the generator's c and its size the schedule's ``max_resolution``, both given to
    ``Discriminator`` beside it.

    Args:
        minibatch_std: append ProGAN's minibatch-stddev channel at 4x4 (DeepPrivacy v1 did not).
        output_gain: equalized-lr gain of the final linear layer (sqrt(2) in DeepPrivacy's 2019 critic).
    """

    minibatch_std: bool = False
    output_gain: float = math.sqrt(2.0)


class Discriminator(nn.Module):
    """Conditional progressive critic (WGAN: unbounded scores) of the architecture ``config``, for a generator of
    width ``base_width`` (the critic uses ``floor(c * sqrt(2) / 8) * 8``, 720 for 512), up to ``max_resolution``."""

    def __init__(self, config: DiscriminatorConfig = DiscriminatorConfig(), base_width: int = 512,
                 max_resolution: int = 128) -> None:
        super().__init__()
        self.config, self.base_width, self.max_resolution = config, base_width, max_resolution
        self.channels = ch = channel_table(discriminator_base_width(base_width), max_resolution)
        res = trained_resolutions(max_resolution)
        self.from_rgb = per_resolution(lambda r: ConvAct(6, ch[r], 1, pixel_norm_eps=None), [LATENT_RESOLUTION, *res])
        self.blocks = per_resolution(lambda r: DiscriminatorBlock(ch[r], ch[r // 2]), res)
        self.final = FinalBlock(ch[LATENT_RESOLUTION], config.minibatch_std, config.output_gain)

    def forward(
        self,
        image: torch.Tensor,
        condition: torch.Tensor,
        keypoints: torch.Tensor,
        *,
        resolution: int,
        alpha: float | torch.Tensor = 1.0,
    ) -> torch.Tensor:
        """Score ``image`` given its ``condition``.

        Args:
            image: ``(B, 3, r, r)`` in [-1, 1], real or generated.
            condition: ``(B, 3, r, r)`` the image with the face region filled with 0.
            keypoints: ``(B, 7, 2)`` normalised, absent outside [0, 1).
            resolution: r, a power of two in [8, max_resolution].
            alpha: fade-in weight of resolution r (0 = the r/2 path only); a 0-dim tensor runs both paths (see
                ``gan.layers.fade_paths``).

        Returns:
            ``(B, 1)`` unbounded scores.
        """
        check_stage(resolution, alpha, self.max_resolution)
        x = torch.cat([image, condition], dim=1)
        new_path, old_path = fade_paths(alpha)
        features = None
        if new_path:
            new = self.from_rgb[str(resolution)](x)
            features = self.blocks[str(resolution)](new, keypoint_maps(keypoints, resolution, new.dtype))
        if old_path:
            old = self.from_rgb[str(resolution // 2)](downsample(x))
            features = old if features is None else blend(old, features, alpha)
        r = resolution // 2
        while r > LATENT_RESOLUTION:
            features = self.blocks[str(r)](features, keypoint_maps(keypoints, r, features.dtype))
            r //= 2
        return self.final(features, keypoint_maps(keypoints, r, features.dtype))
