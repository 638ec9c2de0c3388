"""What training shows of the EMA generator on the fixed validation faces: FID, privacy/utility and sample grids.

Each runs every N images (``StepProgress``) at the stage of the step just trained; FID and the privacy
measurement also at the end of every stabilisation phase. Their models (FID extractor, dlib) live in the
callbacks, never in the LightningModule, so checkpoints do not carry them.
"""

import time
from typing import Literal

import pytorch_lightning as pl
import torch

from data.face_analysis import FaceAnalyzer
from data.record import FaceBatch, to_float_image
from gan.conditioning import Rounding, condition_batch
from gan.features import build_extractor
from gan.fid import FIDEvaluator
from gan.grid import sample_grid
from gan.privacy.measure import Reference, Tally, compare, control, references
from gan.seeding import fixed_latents


class FIDCallback(pl.Callback):
    """FID of the EMA generator during training, logged as ``metrics/fid/<extractor>/<r>px`` (one curve per
    resolution: FIDs of different resolutions are not comparable). ``last`` keeps the latest per resolution.

    Validation batches are sharded across DDP ranks (torchmetrics sums the statistics).

    Args:
        extractor: ``onet`` (offline, real MTCNN weights), ``inception`` (standard FID, optional extra),
            ``torchscript`` (``weights_path`` = the file), or null to turn FID off.
        weights_path: local weights for the extractor (see ``gan.features``).
        every_images: evaluate every this many images (0: only at the end of stabilisation phases).
        at_phase_end: also evaluate when a stabilisation phase ends (alpha = 1, just before a growth) and at the end.
        z: ``random`` (fixed latents per validation batch) or ``zero``.
        seed: seed of the fixed latents.
        output: ``composited`` (the generated face in the real crop) or ``raw`` (the whole generated crop). The
            paper's protocol is extractor inception, z zero, output raw.
    """

    def __init__(self, extractor: str | None = "onet", weights_path: str | None = None, every_images: int = 1_000_000,
                 at_phase_end: bool = True, z: Literal["random", "zero"] = "random", seed: int = 0,
                 output: Literal["composited", "raw"] = "composited") -> None:
        if every_images < 0:
            raise ValueError("fid.every_images must be >= 0")
        self.output = output
        self.last: dict[int, float] = {}
        self.evaluator = FIDEvaluator(build_extractor(extractor, weights_path), extractor) if extractor else None
        self.every_images, self.at_phase_end, self.z, self.seed = every_images, at_phase_end, z, seed
        self.fid_seconds = 0.0
        self._start: float | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def due(self, progress) -> bool:
        """Whether the step that made ``progress`` (a ``StepProgress``) is followed by an evaluation."""
        return progress.evaluation_due(self.every_images, self.at_phase_end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.evaluator is None or not self.due(pl_module.progress):
            return
        started = time.perf_counter()
        stage = pl_module.progress.stage
        rank, world = trainer.global_rank, trainer.world_size
        shard = (b for i, b in enumerate(trainer.datamodule.validation_loader()) if i % world == rank)
        with trainer.precision_plugin.forward_context():  # the training precision (bf16 autocast, ...)
            fid = self.evaluator(pl_module.G_ema, shard, stage.resolution, pl_module.hparams.box_rounding, stage.alpha,
                                 self.z, self.seed, pl_module.device, self.output)
        self.fid_seconds += time.perf_counter() - started
        self.last[stage.resolution] = fid
        pl_module.log_scalars({f"metrics/fid/{self.evaluator.name}/{stage.resolution}px": fid,
                               "perf/fid_share": self.fid_seconds / (time.perf_counter() - self._start)})


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
        if self.every_images and datamodule is not None and hasattr(datamodule, "fixed_batch"):
            self.faces = datamodule.fixed_batch(self.num)

    @torch.no_grad()
    def generate(self, generator, faces: FaceBatch, resolution: int, rounding: Rounding, alpha: float, device):
        """(the conditioned faces, ``generator``'s output for them with the fixed latents)."""
        z = fixed_latents((len(faces), *generator.latent_shape), self.seed, device)
        image = to_float_image(faces.image.to(device))
        conditioned = condition_batch(image, faces.box.to(device), faces.keypoints.to(device), resolution, rounding,
                                      alpha)
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
        conditioned, fake = self.generate(pl_module.G_ema, self.faces, stage.resolution, pl_module.hparams.box_rounding,
                                          stage.alpha, pl_module.device)
        grid = sample_grid(conditioned.condition.cpu(), fake.cpu(), conditioned.image.cpu(), self.faces.keypoints)
        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image(self.TAG, grid, progress.after)


class PrivacyCallback(pl.Callback):
    """Does the EMA generator anonymise, and does the face stay useful? (``gan.privacy``, measured with dlib.)

    On the first ``num`` fixed validation faces, the generated face (z = 0, the anonymizer's default) is pasted
    into each crop and compared with the original: ``metrics/privacy/reid_rate``,
    ``metrics/privacy/identity_distance``, ``metrics/utility/detection_rate`` (and ``..._vs_original``),
    ``metrics/utility/landmark_error``. Under DDP each rank measures a share and the counts are summed.
    The originals' side (descriptors, detections, landmarks) is measured once and kept.

    Args:
        num: faces measured (0 turns the measurement off); needs ``data.num_val >= num``.
        every_images: measure every this many images (0: only at the end of stabilisation phases).
        at_phase_end: also measure when a stabilisation phase ends and at the end of training.
        min_resolution: measure only from this resolution on (small faces are blobs to a face detector).
        mmod: detect with dlib's MMOD CNN detector instead of HOG.
    """

    def __init__(self, num: int = 0, every_images: int = 1_000_000, at_phase_end: bool = True,
                 min_resolution: int = 64, mmod: bool = False) -> None:
        if num < 0 or every_images < 0:
            raise ValueError("privacy.num and privacy.every_images must be >= 0")
        self.num, self.every_images, self.at_phase_end = num, every_images, at_phase_end
        self.min_resolution = min_resolution
        self.analyzer = FaceAnalyzer(mmod) if num else None  # fails at start-up, naming the pip command
        self.faces: FaceBatch | None = None
        self.references: list[list[Reference]] | None = None
        self.last: tuple[int, dict] | None = None  # (resolution, summary) of the latest measurement

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.num:
            faces = trainer.datamodule.fixed_batch(self.num)
            mine = torch.arange(len(faces))[trainer.global_rank :: trainer.world_size]  # this rank's share
            self.faces = FaceBatch(faces.image[mine], faces.box[mine], faces.keypoints[mine], faces.index[mine])

    def measure(self, generator, resolution: int, alpha: float, rounding: Rounding, device) -> Tally:
        """This rank's share of the faces, anonymised by ``generator`` at (resolution, alpha) through the anonymizer
        (z = 0, its default), measured."""
        from gan.anonymize import Anonymizer

        def generate(condition, mask, points, latents):
            return generator(condition, mask, points, latents, resolution=resolution, alpha=alpha)

        anonymizer = Anonymizer(generate, resolution, generator.latent_shape, rounding, batch_size=64, device=device)
        originals, boxes, points = self.faces.as_photos()
        generated = [image for image, _ in anonymizer.many(originals, boxes, points)]
        if self.references is None:
            self.references = [references(self.analyzer, image, b) for image, b in zip(originals, boxes, strict=True)]
        tally = Tally()
        for refs, image in zip(self.references, generated, strict=True):
            tally += compare(self.analyzer, refs, image)
        return tally

    @property
    def control(self) -> Tally:
        """The originals measured against themselves (detections of the originals, this rank's share)."""
        total = Tally()
        for refs in self.references:
            total += control(refs)
        return total

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        progress = pl_module.progress
        stage = progress.stage
        if not self.num or stage.resolution < self.min_resolution:
            return
        if not progress.evaluation_due(self.every_images, self.at_phase_end):
            return
        with trainer.precision_plugin.forward_context():
            tally = self.measure(pl_module.G_ema, stage.resolution, stage.alpha, pl_module.hparams.box_rounding,
                                 pl_module.device)
        original = self.control
        if trainer.world_size > 1:  # sum the counts of all ranks
            both = torch.stack([tally.as_tensor(), original.as_tensor()]).to(pl_module.device)
            both = trainer.strategy.reduce(both, reduce_op="sum").cpu()
            tally, original = Tally.from_tensor(both[0]), Tally.from_tensor(both[1])
        summary = tally.summary(original)
        self.last = (stage.resolution, summary)
        tags = {"metrics/privacy/reid_rate": "reid_rate", "metrics/privacy/identity_distance": "identity_distance",
                "metrics/utility/detection_rate": "detection_rate",
                "metrics/utility/detection_rate_vs_original": "detection_rate_vs_original",
                "metrics/utility/landmark_error": "landmark_error"}
        pl_module.log_scalars({tag: summary[key] for tag, key in tags.items() if summary.get(key) is not None})
