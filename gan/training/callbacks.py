"""What training shows of the EMA generator on the fixed validation faces: FID and sample grids.

Both run every N images (``StepProgress.crossed``) at the stage of the step just trained; FID also at
the end of every stabilisation phase. The FID extractor lives in its callback, never in the
LightningModule, so checkpoints do not carry it.
"""

import time

import pytorch_lightning as pl
import torch

from data.record import FaceBatch, to_float_image
from gan.conditioning import condition_batch
from gan.features import build_extractor
from gan.fid import FIDEvaluator
from gan.grid import make_grid
from gan.seeding import fixed_latents


class FIDCallback(pl.Callback):
    """FID of the EMA generator during training, logged as ``metrics/fid/<extractor>``.

    Validation batches are sharded across DDP ranks (torchmetrics sums the statistics).

    Args:
        extractor: ``onet`` (offline, real MTCNN weights), ``inception`` (standard FID, optional extra),
            ``torchscript`` (``weights_path`` = the file), or null to turn FID off.
        weights_path: local weights for the extractor (see ``gan.features``).
        every_images: evaluate every this many images (0: only at the end of stabilisation phases).
        at_phase_end: also evaluate when a stabilisation phase ends (alpha = 1, just before a growth) and at the end.
        z: ``random`` (fixed latents per validation batch) or ``zero``.
        seed: seed of the fixed latents.
    """

    def __init__(self, extractor: str | None = "onet", weights_path: str | None = None, every_images: int = 1_000_000,
                 at_phase_end: bool = True, z: str = "random", seed: int = 0) -> None:
        if every_images < 0:
            raise ValueError("fid.every_images must be >= 0")
        self.evaluator = FIDEvaluator(build_extractor(extractor, weights_path), extractor) if extractor else None
        self.every_images, self.at_phase_end, self.z, self.seed = every_images, at_phase_end, z, seed
        self.fid_seconds = 0.0
        self._start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def due(self, progress) -> bool:
        """Whether the step that made ``progress`` (a ``StepProgress``) is followed by an evaluation."""
        if progress.crossed(self.every_images):
            return True
        return self.at_phase_end and (progress.finished or progress.stabilization_ended)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.evaluator is None or not self.due(pl_module.progress):
            return
        started = time.perf_counter()
        stage = pl_module.progress.stage
        rank, world = trainer.global_rank, trainer.world_size
        shard = (b for i, b in enumerate(trainer.datamodule.val_dataloader()) if i % world == rank)
        with trainer.precision_plugin.forward_context():  # the training precision (bf16 autocast, ...)
            fid = self.evaluator(pl_module.G_ema, shard, stage.resolution, stage.alpha, self.z, self.seed,
                                 pl_module.device)
        self.fid_seconds += time.perf_counter() - started
        if trainer.is_global_zero:  # straight to the loggers: self.log would keep it only on logging steps
            name = self.evaluator.name
            metrics = {f"metrics/fid/{name}": fid, f"metrics/fid/{name}/{stage.resolution}px": fid,
                       "metrics/fid/images_seen": float(pl_module.images_seen),
                       "perf/fid_share": self.fid_seconds / (time.perf_counter() - self._start)}
            for logger in trainer.loggers:  # x-axis: images seen
                logger.log_metrics(metrics, step=int(pl_module.images_seen))


class SampleGrids(pl.Callback):
    """A grid of condition | EMA generated | real for the fixed validation faces, with fixed latents.

    Args:
        num: how many validation faces (the first ``num``, in order; needs ``data.num_val >= num``).
        every_images: log a grid every this many images (0: never) and at the end of training.
        seed: seed of the fixed latents.
    """

    TAG = "samples/condition_generated_real"

    def __init__(self, num: int = 16, every_images: int = 200_000, seed: int = 0) -> None:
        if num <= 0 or every_images < 0:
            raise ValueError("samples.num must be positive and samples.every_images >= 0")
        self.num, self.every_images, self.seed = num, every_images, seed
        self.faces: FaceBatch | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "fixed_batch"):
            self.faces = datamodule.fixed_batch(self.num)

    @torch.no_grad()
    def generate(self, generator, faces: FaceBatch, resolution: int, alpha: float, device):
        """(the conditioned faces, ``generator``'s output for them with the fixed latents)."""
        z = fixed_latents((len(faces), *generator.latent_shape), self.seed, device)
        image = to_float_image(faces.image.to(device))
        conditioned = condition_batch(image, faces.box.to(device), faces.keypoints.to(device), resolution, alpha)
        fake = generator(conditioned.condition, conditioned.mask, conditioned.keypoints, z,
                         resolution=resolution, alpha=alpha)
        return conditioned, fake

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        progress = pl_module.progress
        if not self.every_images or not (progress.crossed(self.every_images) or progress.finished):
            return
        if self.faces is None or not trainer.is_global_zero:
            return
        stage = progress.stage
        conditioned, fake = self.generate(pl_module.G_ema, self.faces, stage.resolution, stage.alpha, pl_module.device)
        triplets = torch.stack([conditioned.condition, fake, conditioned.image], dim=1).flatten(0, 1)
        grid = make_grid(triplets, columns=6)
        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image(self.TAG, grid, progress.after)
