import itertools

import pytest
import torch

from gan.training.datamodule import FaceDataModule, ScheduledBatchSampler
from gan.training.schedule import Schedule

SCHEDULE = Schedule(8, 32, fade_images=40, stabilize_images=40, batch_sizes={8: 8, 16: 6, 32: 4}, total_images=400)


def test_batch_sizes_follow_the_schedule():
    sampler = ScheduledBatchSampler(50, SCHEDULE)
    images, sizes = 0, []
    for batch in sampler:
        assert len(batch) == SCHEDULE.stage_at(images).batch_size
        sizes.append(len(batch))
        images += len(batch)
    assert 400 <= images < 404
    assert sizes[:6] == [8, 8, 8, 8, 8, 6]  # the 16 px fade starts at the first batch at or after 40 images


def test_epochs_are_permutations_and_reproducible():
    stream = list(itertools.chain.from_iterable(ScheduledBatchSampler(10, SCHEDULE, seed=3)))
    for epoch in range(5):
        assert sorted(stream[epoch * 10 : epoch * 10 + 10]) == list(range(10))
    assert stream == list(itertools.chain.from_iterable(ScheduledBatchSampler(10, SCHEDULE, seed=3)))
    assert stream != list(itertools.chain.from_iterable(ScheduledBatchSampler(10, SCHEDULE, seed=4)))


def test_resume_continues_the_same_stream():
    full = list(ScheduledBatchSampler(17, SCHEDULE, seed=1))
    consumed = sum(len(b) for b in full[:9])
    assert list(ScheduledBatchSampler(17, SCHEDULE, start_images=consumed, seed=1)) == full[9:]


@pytest.mark.parametrize("world_size", [2])
def test_global_batch_is_split_across_ranks(world_size):
    single = list(ScheduledBatchSampler(23, SCHEDULE, seed=2))
    ranks = [list(ScheduledBatchSampler(23, SCHEDULE, rank=r, world_size=world_size,
                                        seed=2)) for r in range(world_size)]
    assert all(len(r) == len(single) for r in ranks)
    for step, batch in enumerate(single):
        assert sum((r[step] for r in ranks), []) == batch


def test_batch_sizes_must_divide_across_devices():
    with pytest.raises(ValueError, match=r"batch_sizes\[16\] = 6 is not divisible by the 4 devices"):
        ScheduledBatchSampler(10, SCHEDULE, world_size=4)


def test_loader_delivers_batches_with_workers(demo):
    module = FaceDataModule(str(demo), num_val=5, val_batch_size=2, num_workers=2)
    batches = list(itertools.islice(module.scheduled_loader(SCHEDULE), 12))
    assert [len(b) for b in batches[:6]] == [8, 8, 8, 8, 8, 6]
    assert batches[0].image.dtype == torch.uint8 and batches[0].image.shape == (8, 3, 128, 128)
    val = list(module.validation_loader())
    assert [b.index.tolist() for b in val] == [[0, 1], [2, 3], [4]]
    fixed = module.fixed_batch(3)
    assert fixed.index.tolist() == [0, 1, 2] and torch.equal(fixed.image[:2], val[0].image)


def test_after_transfer_converts_and_augments_only_in_training(demo):
    module = FaceDataModule(str(demo), num_workers=0, flip_probability=1.0)
    batch = module.fixed_batch(2)
    out = module.on_after_batch_transfer(batch, 0)  # no trainer: not training, no augmentation
    assert out.image.shape == (2, 3, 128, 128) and out.image.dtype == torch.float32
    assert torch.equal(out.box, batch.box)

    class Trainer:
        training, global_rank, lightning_module = True, 0, None

    module.trainer = Trainer()
    flipped = module.on_after_batch_transfer(batch, 0)
    assert torch.equal(flipped.image, out.image.flip(-1))


def test_too_few_validation_samples(demo):
    with pytest.raises(ValueError, match="100 validation samples requested"):
        FaceDataModule(str(demo), num_val=10).fixed_batch(100)
