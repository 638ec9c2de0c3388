"""Per-step random streams derived from (seed, images_seen, rank).

Every random draw of a training step (latents, gradient-penalty weights, augmentation) comes from a
stream seeded by the run's seed, the images seen before the step and the rank. A resumed run therefore
draws exactly what an uninterrupted run would, and ranks draw independent noise.
"""

import torch


def step_seed(seed: int, images_seen: int, rank: int) -> int:
    return ((seed * 1_000_003 + images_seen) * 1_009 + rank) % (2**63)


def step_generator(seed: int, images_seen: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(step_seed(seed, images_seen, rank))
