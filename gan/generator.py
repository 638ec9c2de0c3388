"""DeepPrivacy's progressive U-Net generator (Hukkelås et al., "DeepPrivacy", ISVC 2019).

Every resolution's blocks are built in ``__init__``; ``forward(..., resolution=, alpha=)`` selects
the active path, so the parameter set never changes while the network grows.
"""

import math
from dataclasses import dataclass

import torch
from torch import nn

from data.keypoints import NUM_KEYPOINTS
from gan.channels import LATENT_RESOLUTION, channel_table, check_stage, trained_resolutions
from gan.keypoints import keypoint_maps
from gan.layers import ConvAct, EqualizedConv2d, blend, downsample, fade_paths, per_resolution, upsample


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator's architecture: the ``model.generator`` section, and ``architecture.generator`` in checkpoints
    and exports. Its size is the schedule's ``max_resolution``, given to ``Generator`` beside it.

    Args:
        base_width: c, the width at 4..32 px (512 in the paper); see ``gan.channels.channel_table``. The critic's
            width follows it (``floor(c * sqrt(2) / 8) * 8``).
        latent_channels: channels of the spatial latent z of shape ``(latent_channels, 4, 4)``.
        to_rgb_gain: equalized-lr gain of the to_rgb layers (sqrt(2) in DeepPrivacy, like every other conv).
        pixel_norm_eps: PixelNorm's eps (1e-8 in DeepPrivacy 2019 and the paper, 1e-7 in its current code).
    """

    base_width: int = 512
    latent_channels: int = 32
    to_rgb_gain: float = math.sqrt(2.0)
    pixel_norm_eps: float = 1e-8


def mask_region(mask: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` float mask -> bool, True where a pixel is to be generated (mask > 0.5)."""
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must have shape (B, 1, H, W), got {tuple(mask.shape)}")
    return mask > 0.5


class EncoderBlock(nn.Sequential):
    """conv3x3 in -> out, conv3x3 out -> out; its output is the U-Net skip, pooled afterwards."""

    def __init__(self, in_channels: int, out_channels: int, eps: float) -> None:
        super().__init__(ConvAct(in_channels, out_channels, 3, eps), ConvAct(out_channels, out_channels, 3, eps))


class DecoderBlock(nn.Module):
    """concat(x, skip, keypoint maps) -> conv1x1 -> conv3x3 -> conv3x3."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, eps: float) -> None:
        super().__init__()
        self.fuse = ConvAct(in_channels + skip_channels + NUM_KEYPOINTS, in_channels, 1, eps)
        self.conv1 = ConvAct(in_channels, out_channels, 3, eps)
        self.conv2 = ConvAct(out_channels, out_channels, 3, eps)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(self.fuse(torch.cat([x, skip, maps], dim=1))))


class Bottleneck(nn.Module):
    """At 4x4: 2 x conv3x3, concat(keypoint maps, z), conv1x1, 2 x conv3x3."""

    def __init__(self, channels: int, latent_channels: int, eps: float) -> None:
        super().__init__()
        self.pre = nn.Sequential(ConvAct(channels, channels, 3, eps), ConvAct(channels, channels, 3, eps))
        self.fuse = ConvAct(channels + NUM_KEYPOINTS + latent_channels, channels, 1, eps)
        self.post = nn.Sequential(ConvAct(channels, channels, 3, eps), ConvAct(channels, channels, 3, eps))

    def forward(self, x: torch.Tensor, maps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.post(self.fuse(torch.cat([self.pre(x), maps, z], dim=1)))


class Generator(nn.Module):
    """Conditional progressive U-Net generator of the architecture ``config``, built up to ``max_resolution``
    (128 in the paper)."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig(), max_resolution: int = 128) -> None:
        super().__init__()
        self.config, self.max_resolution = config, max_resolution
        eps = config.pixel_norm_eps
        self.channels = ch = channel_table(config.base_width, max_resolution)
        res = trained_resolutions(max_resolution)
        rgb_res = [LATENT_RESOLUTION, *res]  # from_rgb / to_rgb also at 4 px: the old path while 8 px fades in
        self.from_rgb = per_resolution(lambda r: ConvAct(3, ch[r], 1, eps), rgb_res)
        self.encoder = per_resolution(lambda r: EncoderBlock(ch[r], ch[r // 2], eps), res)
        self.bottleneck = Bottleneck(ch[LATENT_RESOLUTION], config.latent_channels, eps)
        self.decoder = per_resolution(lambda r: DecoderBlock(ch[r // 2], ch[r // 2], ch[r], eps), res)
        self.to_rgb = per_resolution(lambda r: EqualizedConv2d(ch[r], 3, 1, gain=config.to_rgb_gain), rgb_res)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.config.latent_channels, LATENT_RESOLUTION, LATENT_RESOLUTION)

    def forward(
        self,
        condition: torch.Tensor,
        mask: torch.Tensor,
        keypoints: torch.Tensor,
        z: torch.Tensor | None = None,
        *,
        resolution: int,
        alpha: float | torch.Tensor = 1.0,
        composite: bool = True,
    ) -> torch.Tensor:
        """Paint a face into the masked region.

        Args:
            condition: ``(B, 3, r, r)`` in [-1, 1]. Pixels where ``mask`` is set are ignored
                (blanked here, whatever the caller passed), so an unmasked photo cannot leak its face.
            mask: ``(B, 1, r, r)``, 1 = pixel to generate; thresholded at 0.5.
            keypoints: ``(B, 7, 2)`` normalised to [0, 1), absent outside.
            z: ``(B, latent_channels, 4, 4)``; drawn from N(0, 1) when None.
            resolution: r, the active resolution (a power of two in [8, max_resolution]).
            alpha: fade-in weight of resolution r (0 = the r/2 path only, 1 = the r layers only); a 0-dim tensor
                runs both paths and is not read on the host (``gan.layers.fade_paths``).
            composite: paste the condition back outside the mask (inference, export). False gives the raw output,
                the whole crop generated, as DeepPrivacy's critic sees it in training; it too never depends on
                the pixels under the mask.

        Returns:
            ``(B, 3, r, r)``: generated pixels inside the mask and exactly ``condition`` outside it (raw output:
            generated everywhere).
        """
        check_stage(resolution, alpha, self.max_resolution)
        if condition.shape[-2:] != (resolution, resolution):
            raise ValueError(f"condition is {tuple(condition.shape)}, expected (B, 3, {resolution}, {resolution})")
        to_generate = mask_region(mask)
        x = condition.masked_fill(to_generate, 0.0)
        if z is None:
            z = torch.randn(x.shape[0], *self.latent_shape, device=x.device, dtype=x.dtype)

        # Encoder: the entry resolution, faded with the half-resolution entry while alpha < 1.
        new_path, old_path = fade_paths(alpha)
        skips = {}
        features = None
        if new_path:
            skips[resolution] = self.encoder[str(resolution)](self.from_rgb[str(resolution)](x))
            features = downsample(skips[resolution])
        if old_path:
            old = self.from_rgb[str(resolution // 2)](downsample(x))
            features = old if features is None else blend(old, features, alpha)
        r = resolution // 2
        while r > LATENT_RESOLUTION:
            skips[r] = self.encoder[str(r)](features)
            features = downsample(skips[r])
            r //= 2

        features = self.bottleneck(features, keypoint_maps(keypoints, r, features.dtype), z.to(features.dtype))

        # Decoder: up to resolution / 2 always; the entry resolution only while alpha > 0.
        while r < resolution // 2:
            r *= 2
            features = self.decoder[str(r)](upsample(features), skips[r], keypoint_maps(keypoints, r, features.dtype))
        image = None
        if new_path:
            new = self.decoder[str(resolution)](
                upsample(features), skips[resolution], keypoint_maps(keypoints, resolution, features.dtype)
            )
            image = self.to_rgb[str(resolution)](new)
        if old_path:
            old = upsample(self.to_rgb[str(resolution // 2)](features))
            image = old if image is None else blend(old, image, alpha)
        image = image.to(condition.dtype)
        return torch.where(to_generate, image, condition) if composite else image
