"""FID of the generator on fixed validation faces (Heusel et al. 2017), with torchmetrics.

``FIDEvaluator`` keeps the real statistics of one resolution and recomputes them only when the
resolution changes; ``FIDCallback`` runs it on the EMA generator during training, every N images and
at the end of every stabilisation phase, sharded across DDP ranks (torchmetrics sums the statistics).
The extractor lives in the callback, never in the LightningModule, so checkpoints do not carry it.
"""

import time
from collections.abc import Iterable

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from data.conditioning import condition_batch, to_float_image
from data.prepared import FaceBatch
from gan.features import build_extractor
from gan.seeding import step_seed


def sample_latents(generator: nn.Module, batch: FaceBatch, z: str, seed: int, device) -> torch.Tensor:
    """``zero``: z = 0 (the paper's FID); ``random``: fixed per batch, from the index of its first sample."""
    shape = (len(batch), *generator.latent_shape)
    if z == "zero":
        return torch.zeros(shape, device=device)
    if z != "random":
        raise ValueError(f"z must be 'zero' or 'random', got {z!r}")
    rng = torch.Generator().manual_seed(step_seed(seed, int(batch.index[0]), 0))
    return torch.randn(shape, generator=rng).to(device)


class FIDEvaluator:
    """FID at one resolution; real statistics cached until the resolution changes.

    Args:
        extractor: ``(N, 3, H, W)`` [-1, 1] -> ``(N, d)`` with ``num_features``.
        name: how the extractor is named in logs and reports.
    """

    def __init__(self, extractor: nn.Module, name: str) -> None:
        self.name = name
        self.metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
        self.real_resolution: int | None = None

    def _reset_real(self) -> None:
        self.metric.reset_real_features = True
        self.metric.reset()
        self.metric.reset_real_features = False

    @torch.no_grad()
    def __call__(
        self,
        generator: nn.Module,
        batches: Iterable[FaceBatch],
        resolution: int,
        alpha: float = 1.0,
        z: str = "random",
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> float:
        """FID of ``generator`` on ``batches`` (uint8 faces) at ``resolution``; fakes at the stage's ``alpha``,
        reals always at alpha = 1."""
        self.metric.to(device)
        need_real = self.real_resolution != resolution
        if need_real:
            self._reset_real()
        else:
            self.metric.reset()  # keeps the real statistics (reset_real_features=False)
        for batch in batches:
            image = to_float_image(batch.image.to(device))
            box, keypoints = batch.box.to(device), batch.keypoints.to(device)
            x = condition_batch(image, box, keypoints, resolution, alpha)
            if need_real:
                real = x.image if alpha >= 1 else condition_batch(image, box, keypoints, resolution).image
                self.metric.update(real, real=True)
            latents = sample_latents(generator, batch, z, seed, device)
            fake = generator(x.condition, x.mask, x.keypoints, latents, resolution=resolution, alpha=alpha)
            self.metric.update(fake.float(), real=False)
        self.real_resolution = resolution
        return float(self.metric.compute())


class FIDCallback(pl.Callback):
    """FID of the EMA generator during training, logged as ``metrics/fid/<extractor>``.

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

    def due(self, pl_module) -> bool:
        seen = int(pl_module.images_seen)
        before = seen - pl_module._last_batch_size
        if self.every_images and seen // self.every_images != before // self.every_images:
            return True
        if not self.at_phase_end:
            return False
        finished = pl_module.training_finished
        last, now = pl_module.schedule.stage_at(before), pl_module.schedule.stage_at(seen)
        return finished or (last.phase == "stabilize" and now.phase_start != last.phase_start)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.evaluator is None or not self.due(pl_module):
            return
        started = time.perf_counter()
        stage = pl_module.last_stage
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
