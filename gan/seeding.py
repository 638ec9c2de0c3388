"""Every seed of SafeFakes, derived in one place.

Every random draw of a training step (latents, gradient-penalty weights, augmentation) comes from a
stream seeded by the run's seed, the images seen before the step and the rank. A resumed run therefore
draws exactly what an uninterrupted run would, and ranks draw independent noise. Fixed latents (sample
grids, FID, the anonymizer's ``--seed``) are drawn on the CPU, so they are the same on every device; the
anonymizer's are drawn per face (``face_seed``), so they do not depend on which faces share a batch.
"""

import torch


def step_seed(seed: int, images_seen: int, rank: int) -> int:
    return ((seed * 1_000_003 + images_seen) * 1_009 + rank) % (2**63)


def face_seed(seed: int, photo: int, face: int) -> int:
    """The seed of one face's latent: the run's ``seed``, a key of its photo and its index in the photo."""
    return ((seed * 1_000_003 + photo) * 100_003 + face) % (2**63)


def step_generator(seed: int, images_seen: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(step_seed(seed, images_seen, rank))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU stream of one epoch's sample order."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def fixed_latents(shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """N(0, 1) latents of ``shape`` from ``seed``, drawn on the CPU and moved to ``device``."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
