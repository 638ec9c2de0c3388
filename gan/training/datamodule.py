"""The LightningDataModule: batches whose size follows the growth schedule, reproducibly.

The batch sampler walks the schedule itself: it knows the images seen before each batch, so the batch
size (global, divided across ranks) changes exactly at the schedule's boundaries and a resumed run
continues the very same sequence of samples. Images travel as uint8 and become float, augmented,
on the device.
"""

from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data.augment import FaceAugment
from data.fdf import Split
from data.record import DataError, FaceBatch, FaceRecord, collate, to_float_image
from data.sources import open_dataset
from gan.seeding import epoch_generator, step_seed
from gan.training.schedule import Schedule


class ScheduledBatchSampler(Sampler[list[int]]):
    """Index batches for one rank, from ``start_images`` until the schedule's ``total_images``.

    The global sample stream is the concatenation of seeded permutations of the dataset (one per epoch);
    the global batch at images_seen = n takes stream positions ``[n, n + batch)``, and rank k takes the
    k-th of ``world_size`` equal slices of it.

    It has no ``__len__`` on purpose: after a resume Lightning counts batch indices from the checkpoint,
    and a length counted from ``start_images`` would end the epoch early. The stream simply ends.
    """

    def __init__(
        self, dataset_size: int, schedule: Schedule, start_images: int = 0, rank: int = 0, world_size: int = 1,
        seed: int = 0
    ) -> None:
        for resolution, batch in schedule.batch_sizes.items():
            if batch % world_size:
                raise ValueError(
                    f"schedule.batch_sizes[{resolution}] = {batch} is not divisible by the {world_size} devices"
                )
        self.dataset_size = dataset_size
        self.schedule = schedule
        self.start_images = start_images
        self.rank = rank
        self.world_size = world_size
        self.seed = seed

    def _permutation(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.dataset_size, generator=epoch_generator(self.seed, epoch))

    def __iter__(self) -> Iterator[list[int]]:
        epoch_cached, permutation = -1, None  # positions only grow: one epoch's permutation at a time
        images_seen = self.start_images
        while images_seen < self.schedule.total_images:
            batch = self.schedule.stage_at(images_seen).batch_size
            per_rank = batch // self.world_size
            position = images_seen + self.rank * per_rank
            end, indices = position + per_rank, []
            while position < end:
                epoch, offset = divmod(position, self.dataset_size)
                if epoch != epoch_cached:
                    epoch_cached, permutation = epoch, self._permutation(epoch)
                take = min(end - position, self.dataset_size - offset)
                indices += permutation[offset : offset + take].tolist()
                position += take
            yield indices
            images_seen += batch


class FaceDataModule(pl.LightningDataModule):
    """Training and fixed validation batches of face crops.

    Args:
        train_path: a prepared folder, the official FDF release or DeepPrivacy's layout.
        val_path: the same for validation; None uses the first ``num_val`` training samples (they overlap).
        train_split / val_split: which FDF split to read (ignored for prepared folders).
        num_val: size of the fixed validation subset (sample grids and FID), always in the same order.
        val_batch_size: batch size of the validation loader.
        num_workers / pin_memory / persistent_workers: DataLoader settings.
        seed: seed of the training sample order.
        flip_probability / color_jitter: augmentation (see ``data.augment.FaceAugment``); 0 disables each.
    """

    def __init__(
        self,
        train_path: str,
        val_path: str | None = None,
        train_split: Split = "train",
        val_split: Split = "val",
        num_val: int = 256,
        val_batch_size: int = 64,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        seed: int = 0,
        flip_probability: float = 0.5,
        color_jitter: float = 0.0,
    ) -> None:
        super().__init__()
        if num_val <= 0 or val_batch_size <= 0 or num_workers < 0:
            raise ValueError("data.num_val and data.val_batch_size must be positive, data.num_workers >= 0")
        self.train_path, self.val_path = train_path, val_path
        self.train_split, self.val_split = train_split, val_split
        self.num_val, self.val_batch_size = num_val, val_batch_size
        self.num_workers, self.pin_memory, self.persistent_workers = num_workers, pin_memory, persistent_workers
        self.seed = seed
        self.augment = FaceAugment(flip_probability, color_jitter)
        self.train_set: Dataset[FaceRecord] | None = None
        self.val_set: Dataset[FaceRecord] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = open_dataset(self.train_path, self.train_split)
            source = open_dataset(self.val_path, self.val_split) if self.val_path else self.train_set
            count = min(self.num_val, len(source))  # type: ignore[arg-type]
            self.val_set = torch.utils.data.Subset(source, range(count))

    def _loader(self, dataset: Dataset, **kwargs) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            dataset,
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
            collate_fn=collate,
            **kwargs,
        )

    def scheduled_loader(self, schedule: Schedule, start_images: int = 0, rank: int = 0,
                         world_size: int = 1) -> DataLoader:
        """The training loader from ``start_images`` on, for one rank of ``world_size``."""
        self.setup()
        sampler = ScheduledBatchSampler(len(self.train_set), schedule, start_images, rank, world_size, self.seed)
        return self._loader(self.train_set, batch_sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        module = self.trainer.lightning_module
        return self.scheduled_loader(
            module.schedule, int(module.images_seen), self.trainer.global_rank, self.trainer.world_size
        )

    def validation_loader(self) -> DataLoader:
        """The fixed validation faces in order (FID). Not Lightning's ``val_dataloader``: there is no validation
        loop."""
        self.setup()
        return self._loader(self.val_set, batch_size=self.val_batch_size, shuffle=False)

    def fixed_batch(self, count: int) -> FaceBatch:
        """The first ``count`` validation samples, in order: the conditions of every sample grid."""
        self.setup()
        if count > len(self.val_set):
            raise DataError("too_few_samples", str(self.val_path or self.train_path),
                            f"{count} validation samples requested, {len(self.val_set)} available (data.num_val)")
        return collate([self.val_set[i] for i in range(count)])

    def on_after_batch_transfer(self, batch: FaceBatch, dataloader_idx: int) -> FaceBatch:
        """On the device: uint8 -> float in [-1, 1], then augmentation while training."""
        image = to_float_image(batch.image)
        box, keypoints = batch.box, batch.keypoints
        if self.trainer is not None and self.trainer.training:
            # Seeded by the images seen before this batch: a resumed run augments exactly the same way.
            images_seen = getattr(self.trainer.lightning_module, "images_seen_host", 0)
            devices = [image.device] if image.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(step_seed(self.seed, images_seen, self.trainer.global_rank))
                image, box, keypoints = self.augment(image, box, keypoints)
        return FaceBatch(image, box, keypoints, batch.index)
