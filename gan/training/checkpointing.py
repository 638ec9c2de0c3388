"""Checkpoints by images seen: every N images, before every growth, at the end and on SIGTERM.

What a checkpoint holds and how it is loaded offline: ``gan.checkpoint``.

Each checkpoint is written under a temporary name and renamed, so a file that exists is complete;
``last.ckpt`` always points at the newest. Only the newest ``keep_last`` periodic files are kept.
"""

import os
import re
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

NAME = re.compile(r"^images=(\d+)\.ckpt$")


class ImageCheckpoint(pl.Callback):
    """Args:
    dirpath: folder of the run's checkpoints (``last.ckpt`` and ``images=<n>.ckpt``).
    every_images: save after every this many images (0: only at growth, end and SIGTERM).
    keep_last: how many ``images=<n>.ckpt`` files to keep (the newest).
    """

    def __init__(self, dirpath: str = "checkpoints/run", every_images: int = 1_000_000, keep_last: int = 3) -> None:
        if every_images < 0 or keep_last < 1:
            raise ValueError("checkpoint.every_images must be >= 0 and checkpoint.keep_last >= 1")
        self.dirpath = Path(dirpath)
        self.every_images = every_images
        self.keep_last = keep_last
        self.last_saved: int | None = None

    @property
    def last_path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def save(self, trainer: pl.Trainer, images_seen: int) -> Path:
        """Write ``images=<images_seen>.ckpt`` atomically (collective under DDP) and point last.ckpt at it."""
        path = self.dirpath / f"images={images_seen:011d}.ckpt"
        tmp = path.with_name(path.name + ".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)  # full state: optimizers, loops, scaler
        if trainer.is_global_zero:
            os.replace(tmp, path)
            link = self.last_path.with_name("last.ckpt.tmp")
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, self.last_path)
            self._prune()
        trainer.strategy.barrier("ImageCheckpoint.save")
        self.last_saved = images_seen
        return path

    def _prune(self) -> None:
        found = sorted((int(m.group(1)), p) for p in self.dirpath.glob("images=*.ckpt") if (m := NAME.match(p.name)))
        for _, path in found[: -self.keep_last]:
            path.unlink()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        progress = pl_module.progress
        if progress.crossed(self.every_images) or progress.grew or progress.finished:
            self.save(trainer, progress.after)
        if trainer.received_sigterm and trainer.world_size == 1:
            raise SIGTERMException()  # under DDP Lightning raises it on every rank at the next step

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            seen = int(pl_module.images_seen)
            if self.last_saved != seen and seen > 0:
                self.save(trainer, seen)
