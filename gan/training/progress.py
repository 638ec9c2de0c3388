"""What a training run prints: progress in images seen, and a summary when the schedule is complete.

In a terminal, a tqdm bar counts images seen out of ``schedule.total_images`` (rate in images/s, which stays
meaningful when the batch size changes between phases) with the resolution, alpha, phase and the latest
critic and generator losses. When stdout is not a terminal (CI, ``> log``) it prints one plain line every
twentieth of the schedule instead of rewriting a bar with carriage returns.
"""

import os
import sys
import time
from datetime import timedelta

from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm


def terminal_columns() -> int:
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return 0


def duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class ImageProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, counting images instead of batches.

    Args:
        lines: print plain lines instead of a bar (default: when stdout is not a terminal).
        line_every_images: images between two lines (default: a twentieth of the schedule).
    """

    def __init__(self, lines: bool | None = None, line_every_images: int | None = None) -> None:
        super().__init__()
        self.lines = (not sys.stdout.isatty()) if lines is None else lines
        self.line_every_images = line_every_images
        self._started: tuple[float, int] = (time.perf_counter(), 0)  # (time, images seen) when this fit started

    def init_train_tqdm(self) -> Tqdm:
        # A terminal that reports a size of 0 x 0 (a pseudo-terminal nobody sized: a harness, some `docker exec -t`)
        # would get no bar at all from tqdm: it is drawn 80 x 24 there.
        sized = terminal_columns() > 0
        return Tqdm(desc="train", total=self.trainer.lightning_module.schedule.total_images,
                    position=2 * self.process_position, disable=self.is_disabled or self.lines,
                    leave=True, dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24,
                    file=sys.stdout, smoothing=0.1, unit="img",
                    bar_format="{desc} {percentage:3.0f}%|{bar}| {n}/{total} img [{elapsed}<{remaining}, "
                               "{rate_fmt}{postfix}]")

    def on_train_start(self, trainer, *_) -> None:
        # Lightning calls on_train_epoch_start only at an epoch's start, not when it restores a run in the middle
        # of an epoch (a resumed checkpoint): the bar and the rate start here, for every fit.
        super().on_train_start(trainer)
        self._start(trainer)

    def on_train_epoch_start(self, trainer, *_) -> None:
        self._start(trainer)  # a new epoch: a finished run trained on with a larger schedule

    def _start(self, trainer) -> None:
        module = trainer.lightning_module
        seen = int(module.images_seen)
        self._started = (time.perf_counter(), seen)
        bar = self.train_progress_bar
        bar.reset(total=module.schedule.total_images)
        bar.initial = bar.n = seen  # a resumed run: the rate counts only this process's images

    def status(self, trainer, pl_module) -> dict[str, str]:
        stage = pl_module.progress.stage
        state = {"res": f"{stage.resolution}px", "alpha": f"{stage.alpha:.2f}", "phase": stage.phase}
        metrics = trainer.progress_bar_metrics
        state.update({name: f"{float(metrics[name]):.3f}" for name in ("D", "G") if name in metrics})
        return state

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        progress = pl_module.progress
        if self.is_disabled or progress is None:
            return
        if not self.lines:
            bar = self.train_progress_bar
            bar.n = progress.after
            bar.set_postfix(self.status(trainer, pl_module), refresh=False)
            bar.refresh()
            return
        total = pl_module.schedule.total_images
        every = self.line_every_images or max(1, total // 20)
        if progress.crossed(every) or progress.finished:
            started_at, started_with = self._started
            elapsed = time.perf_counter() - started_at
            rate = (progress.after - started_with) / max(elapsed, 1e-9)
            remaining = max(total - progress.after, 0) / rate if rate > 0 else 0.0
            state = " ".join(f"{k} {v}" for k, v in self.status(trainer, pl_module).items())
            print(f"train {progress.after}/{total} img ({100 * progress.after / total:.0f} %) | {state} | "
                  f"{rate:.1f} img/s | elapsed {duration(elapsed)} ETA {duration(remaining)}", flush=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass  # Lightning would replace the postfix with every logged metric


def run_summary(images_seen: int, seconds: float, fid: dict[int, float], fid_name: str | None,
                privacy: tuple[int, dict] | None, checkpoint: str | None, export: str | None,
                logdir: str | None) -> str:
    """The lines a finished run ends with."""
    rate = images_seen / max(seconds, 1e-9)
    lines = [f"Training complete: {images_seen} images in {duration(seconds)} ({rate:.1f} img/s "
             "including start-up and evaluations)."]
    if fid:
        per_resolution = ", ".join(f"{r} px {value:.2f}" for r, value in sorted(fid.items()))
        lines.append(f"Last FID ({fid_name} features; not comparable to Inception FID): {per_resolution}")
    if privacy is not None:
        resolution, summary = privacy
        rate = summary.get("detection_rate")
        lines.append(f"Privacy at {resolution} px: re-identified {100 * summary['reid_rate']:.1f} %, "
                     f"identity distance {summary['identity_distance']:.3f}, face detected "
                     f"{'-' if rate is None else f'{100 * rate:.1f} %'}")
    if checkpoint:
        lines.append(f"Last checkpoint: {checkpoint}")
    if export:
        lines.append(f"Export: {export}")
    if logdir:
        lines.append(f"TensorBoard: tensorboard --logdir {logdir}")
    return "\n".join(lines)
