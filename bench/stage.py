"""A training module parked at one resolution (alpha = 1, never growing), shared by the step benchmarks."""

import torch

from gan.generator import GeneratorConfig
from gan.training.module import DeepPrivacyGAN
from gan.training.schedule import Schedule

NEVER = 10**9  # fade and stabilisation lengths: the schedule does not move on while a benchmark runs


def module_at(base_width: int, max_resolution: int, resolution: int, batch_size: int, steps: int,
              **options) -> DeepPrivacyGAN:
    """``DeepPrivacyGAN`` at the start of ``resolution``'s stabilisation, for ``steps`` steps of the global
    ``batch_size`` (the same at every resolution); seeded, so every variant starts from the same weights."""
    sizes = {r: batch_size for r in (8, 16, 32, 64, 128, 256, 512) if r <= max_resolution}
    phases = Schedule(8, max_resolution, NEVER, NEVER, sizes).phases
    start = next(images for images, r, phase in phases if r == resolution and phase == "stabilize")
    torch.manual_seed(0)
    schedule = Schedule(8, max_resolution, NEVER, NEVER, sizes, total_images=start + steps * batch_size)
    model = DeepPrivacyGAN(GeneratorConfig(base_width), schedule=schedule, **options)
    model.images_seen.fill_(start)
    model.resolution.fill_(resolution)
    return model
