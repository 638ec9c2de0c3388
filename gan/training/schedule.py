"""Progressive-growing schedule as a pure function of images seen (Karras et al., ICLR 2018).

The start resolution stabilises first; every later resolution fades in over ``fade_images``, then
stabilises over ``stabilize_images``; the last resolution trains on until ``total_images``.
"""

from dataclasses import dataclass, field
from typing import Literal

from gan.channels import LATENT_RESOLUTION, resolutions_up_to

PAPER_BATCH_SIZES = {8: 256, 16: 256, 32: 128, 64: 96, 128: 64}


@dataclass(frozen=True)
class Stage:
    """Where training stands: active resolution, fade-in weight, global batch size and phase."""

    resolution: int
    alpha: float
    batch_size: int
    phase: Literal["fade", "stabilize"]
    phase_start: int  # images_seen at which this phase began


@dataclass(frozen=True)
class Schedule:
    """``stage_at(images_seen)``; batch sizes are global (summed over all ranks).

    Args:
        start_resolution: first resolution trained (8 in DeepPrivacy).
        max_resolution: last resolution.
        fade_images: images over which each new resolution fades in (alpha 0 -> 1).
        stabilize_images: images each resolution trains at alpha = 1 before the next grows.
        batch_sizes: global batch size per resolution; must name every resolution trained.
        total_images: images after which training ends.
    """

    start_resolution: int = 8
    max_resolution: int = 128
    fade_images: int = 1_200_000
    stabilize_images: int = 1_200_000
    batch_sizes: dict[int, int] = field(default_factory=lambda: dict(PAPER_BATCH_SIZES))
    total_images: int = 12_000_000

    def __post_init__(self) -> None:
        if self.start_resolution < 2 * LATENT_RESOLUTION:
            raise ValueError(f"schedule.start_resolution must be >= {2 * LATENT_RESOLUTION}, "
                             f"got {self.start_resolution}")
        try:
            resolutions = resolutions_up_to(self.max_resolution, min_resolution=self.start_resolution)
        except ValueError as error:
            raise ValueError(f"schedule: {error}") from None
        object.__setattr__(self, "batch_sizes", {int(k): int(v) for k, v in self.batch_sizes.items()})
        missing = [r for r in resolutions if r not in self.batch_sizes]
        if missing:
            raise ValueError(f"schedule.batch_sizes has no entry for resolution(s) {missing}")
        if any(v <= 0 for v in self.batch_sizes.values()):
            raise ValueError(f"schedule.batch_sizes must be positive, got {self.batch_sizes}")
        if self.fade_images <= 0 or self.stabilize_images <= 0 or self.total_images <= 0:
            raise ValueError("schedule.fade_images, stabilize_images and total_images must be positive")
        # (start images_seen, resolution, phase) of every phase in order.
        phases: list[tuple[int, int, str]] = [(0, resolutions[0], "stabilize")]
        start = self.stabilize_images
        for resolution in resolutions[1:]:
            phases.append((start, resolution, "fade"))
            phases.append((start + self.fade_images, resolution, "stabilize"))
            start += self.fade_images + self.stabilize_images
        object.__setattr__(self, "phases", tuple(phases))
        object.__setattr__(self, "resolutions", tuple(resolutions))

    def stage_at(self, images_seen: int) -> Stage:
        if images_seen < 0:
            raise ValueError(f"images_seen must be >= 0, got {images_seen}")
        start, resolution, phase = next(p for p in reversed(self.phases) if p[0] <= images_seen)
        alpha = min((images_seen - start) / self.fade_images, 1.0) if phase == "fade" else 1.0
        return Stage(resolution, alpha, self.batch_sizes[resolution], phase, start)  # type: ignore[arg-type]


@dataclass(frozen=True)
class StepProgress:
    """What one training step did to progress: the images seen before and after it.

    The one place that answers "did this step cross a multiple of N images / a growth / the end?";
    callbacks ask it instead of comparing counters themselves.
    """

    schedule: Schedule
    before: int
    after: int

    @property
    def stage(self) -> Stage:
        """The stage the step trained (its batch started at ``before``)."""
        return self.schedule.stage_at(self.before)

    @property
    def batch_size(self) -> int:
        return self.after - self.before

    def crossed(self, every_images: int) -> bool:
        """True when the step passed a multiple of ``every_images`` (never for 0)."""
        return every_images > 0 and self.after // every_images != self.before // every_images

    @property
    def grew(self) -> bool:
        """The next step trains a new resolution."""
        return self.schedule.stage_at(self.after).resolution != self.stage.resolution

    @property
    def stabilization_ended(self) -> bool:
        """The step was the last of a stabilisation phase (alpha = 1, just before a growth)."""
        last = self.stage
        return last.phase == "stabilize" and self.schedule.stage_at(self.after).phase_start != last.phase_start

    @property
    def finished(self) -> bool:
        """The schedule is complete after this step."""
        return self.after >= self.schedule.total_images

    def evaluation_due(self, every_images: int, at_phase_end: bool) -> bool:
        """An evaluation follows this step: every ``every_images`` images, and with ``at_phase_end`` also at the
        end of every stabilisation phase and of training."""
        return self.crossed(every_images) or (at_phase_end and (self.finished or self.stabilization_ended))
