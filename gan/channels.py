"""Stage geometry: the one channel table of the generator and the discriminator (DeepPrivacy v1), the
resolutions they are built for, and the check of a (resolution, alpha) stage."""

import math

# The bottleneck works at 4x4: the spatial latent z, and the old path while 8 px fades in.
LATENT_RESOLUTION = 4


def resolutions_up_to(max_resolution: int, min_resolution: int = LATENT_RESOLUTION) -> list[int]:
    """``[min_resolution, 2 * min_resolution, ..., max_resolution]``; both must be powers of two."""
    for name, value in (("max_resolution", max_resolution), ("min_resolution", min_resolution)):
        if value < LATENT_RESOLUTION or value & (value - 1):
            raise ValueError(f"{name} must be a power of two >= {LATENT_RESOLUTION}, got {value}")
    if max_resolution < min_resolution:
        raise ValueError(f"max_resolution {max_resolution} is below min_resolution {min_resolution}")
    return [2**k for k in range(int(math.log2(min_resolution)), int(math.log2(max_resolution)) + 1)]


def channel_table(base_width: int, max_resolution: int) -> dict[int, int]:
    """Channels at each resolution 4..max_resolution.

    ``base_width`` up to 32 px, then halved at every doubling (c/2 at 64, c/4 at 128, ...),
    each rounded down to a multiple of 8.
    """
    if base_width < 8:
        raise ValueError(f"base_width must be >= 8, got {base_width}")
    table = {}
    for resolution in resolutions_up_to(max_resolution):
        width = base_width * 32 // max(resolution, 32)
        table[resolution] = max(8, width // 8 * 8)
    return table


def discriminator_base_width(base_width: int) -> int:
    """``floor(c * sqrt(2) / 8) * 8``: 720 for c = 512."""
    return int(base_width * math.sqrt(2) / 8) * 8


def trained_resolutions(max_resolution: int) -> list[int]:
    """The resolutions a network trains at: ``[8, 16, ..., max_resolution]`` (4 px is the bottleneck's)."""
    return resolutions_up_to(max_resolution, min_resolution=2 * LATENT_RESOLUTION)


def check_stage(resolution: int, alpha, max_resolution: int) -> None:
    """Raise ValueError unless ``resolution`` is a power of two in [8, max_resolution] and alpha in [0, 1].

    A tensor alpha (a compiled fade's input) must be 0-dim; its value is not read, which would wait for the device.
    """
    if resolution not in trained_resolutions(max_resolution):
        raise ValueError(f"resolution must be a power of two in [{2 * LATENT_RESOLUTION}, {max_resolution}], "
                         f"got {resolution}")
    if hasattr(alpha, "ndim"):
        if alpha.ndim != 0:
            raise ValueError(f"a tensor alpha must be 0-dim, got shape {tuple(alpha.shape)}")
    elif not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
