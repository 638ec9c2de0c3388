import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from data.prepared import PreparedDataset
from gan.features import InceptionFeatures, ONetFeatures, TorchScriptFeatures, build_extractor
from gan.fid import FIDEvaluator
from gan.generator import Generator, GeneratorConfig


class TinyFeatures(nn.Module):
    """A fixed extractor: 2x2 average colours (12 features); counts its calls."""

    num_features = 12

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return nn.functional.adaptive_avg_pool2d(images.float(), 2).flatten(1)


@pytest.fixture(scope="module")
def faces(demo_72):
    return PreparedDataset(demo_72)


def batches(dataset, size=16, count=64):
    return [dataset.__getitems__(list(range(i, min(i + size, count)))) for i in range(0, count, size)]


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift(faces):
    evaluator = FIDEvaluator(TinyFeatures(), "tiny")
    images = faces.__getitems__(list(range(64))).image.float() / 127.5 - 1
    metric = evaluator.metric
    metric.update(images, real=True)
    metric.update(images, real=False)
    assert abs(float(metric.compute())) < 1e-3
    metric.reset()
    metric.update((images + 0.2).clamp(-1, 1), real=False)
    shifted = float(metric.compute())
    metric.reset()
    metric.update((images + 0.5).clamp(-1, 1), real=False)
    assert 0.01 < shifted < float(metric.compute())


def test_real_statistics_are_cached_per_resolution(faces):
    extractor = TinyFeatures()
    evaluator = FIDEvaluator(extractor, "tiny")
    generator = Generator(GeneratorConfig(8), 16)
    data = batches(faces)
    first = evaluator(generator, data, 16, "floor")
    assert extractor.calls == 2 * len(data)  # reals and fakes
    second = evaluator(generator, data, 16, "floor")
    assert extractor.calls == 3 * len(data)  # fakes only: the real statistics were kept
    assert first == pytest.approx(second)  # fixed latents
    evaluator(generator, data, 8, "floor", alpha=1.0)  # a new resolution: reals again
    assert extractor.calls == 5 * len(data)
    assert evaluator(generator, data, 16, "floor", z="zero") != pytest.approx(first)
    # The paper's protocol scores the raw output (the whole crop generated): farther from the real crops.
    raw = evaluator(generator, data, 16, "floor", output="raw")
    assert raw > first and evaluator(generator, data, 16, "floor", output="composited") == pytest.approx(first)
    with pytest.raises(ValueError, match="output must be"):
        evaluator(generator, data, 16, "floor", output="pasted")
    before = extractor.calls
    evaluator(generator, data, 16, "outward")  # the box rule is part of what the reals are of: reals again
    assert extractor.calls == before + 2 * len(data)


def test_named_image_sets_share_the_fid_path(faces):
    """The privacy report scores each method's images against one set of originals: computed once."""
    extractor = TinyFeatures()
    evaluator = FIDEvaluator(extractor, "tiny")
    images = [b.image.float() / 127.5 - 1 for b in batches(faces)]
    same = evaluator.compare("originals", iter(images), lambda: iter(images))
    assert abs(same) < 1e-3 and extractor.calls == 2 * len(images)
    shifted = evaluator.compare("originals", ((x + 0.3).clamp(-1, 1) for x in images), lambda: iter(images))
    assert shifted > 0.01 and extractor.calls == 3 * len(images)  # the originals' statistics were kept


def _ddp_worker(rank, world, port, root, result_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(8), 16)
    data = batches(PreparedDataset(root))
    evaluator = FIDEvaluator(TinyFeatures(), "tiny")
    fid = evaluator(generator, [b for i, b in enumerate(data) if i % world == rank], 16, "floor", alpha=0.5)
    if rank == 0:
        torch.save(torch.tensor(fid, dtype=torch.float64), result_path)
    dist.destroy_process_group()


def test_fid_under_two_process_ddp_equals_single_process(faces, tmp_path):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(8), 16)
    single = FIDEvaluator(TinyFeatures(), "tiny")(generator, batches(faces), 16, "floor", alpha=0.5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(faces.root), str(tmp_path / "fid.pt")), nprocs=2)
    assert float(torch.load(tmp_path / "fid.pt")) == pytest.approx(single, rel=1e-9)


def test_onet_extractor_with_real_weights_separates_faces_from_noise(faces):
    onet = build_extractor("onet")
    assert isinstance(onet, ONetFeatures) and onet.num_features == 256
    images = faces.__getitems__(list(range(72))).image.float() / 127.5 - 1
    probability = torch.softmax(onet.dense6_1(onet(images)), dim=1)[:, 1]
    assert probability.mean() > 0.9  # ONet's own face classifier on its features
    evaluator = FIDEvaluator(onet, "onet")
    metric = evaluator.metric
    metric.update(images[0::2], real=True)
    metric.update(images[1::2], real=False)
    faces_vs_faces = float(metric.compute())
    metric.reset()
    metric.update(torch.rand_like(images[1::2]) * 2 - 1, real=False)
    assert float(metric.compute()) > 5 * faces_vs_faces


def test_onet_offline_message_and_local_path(tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps facenet-pytorch==2.6.0"):
        ONetFeatures()
    with pytest.raises(FileNotFoundError, match="ONet weights not found at"):
        ONetFeatures(tmp_path / "onet.pt")


def test_inception_without_torch_fidelity_says_what_to_install():
    pytest.importorskip("torchmetrics")
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if _TORCH_FIDELITY_AVAILABLE:
        pytest.skip("torch-fidelity is installed here")
    with pytest.raises(ImportError, match="torch-fidelity and torchvision.*extractor=onet"):
        InceptionFeatures()


def test_torchscript_extractor(tmp_path):
    path = tmp_path / "features.pt"
    torch.jit.save(torch.jit.script(TinyScripted()), path)
    extractor = build_extractor("torchscript", str(path))
    assert isinstance(extractor, TorchScriptFeatures) and extractor.num_features == 3
    assert extractor(torch.ones(2, 3, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match="needs weights_path"):
        build_extractor("torchscript")
    with pytest.raises(ValueError, match="unknown FID extractor 'vgg'"):
        build_extractor("vgg")


class TinyScripted(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


def test_fid_callback_schedule_with_and_without_phase_ends():
    from gan.training.callbacks import FIDCallback
    from gan.training.schedule import Schedule, StepProgress

    schedule = Schedule(8, 32, fade_images=16, stabilize_images=16, batch_sizes={8: 8, 16: 8, 32: 4}, total_images=96)
    steps, seen = [], 0
    while seen < schedule.total_images:  # the steps of a run: 8 images each below 48, then 4
        steps.append(StepProgress(schedule, seen, seen + schedule.stage_at(seen).batch_size))
        seen = steps[-1].after

    def due_after(callback):
        return [s.after for s in steps if callback.due(s)]

    assert due_after(FIDCallback(None, every_images=40)) == [16, 40, 48, 80, 96]
    assert due_after(FIDCallback(None, every_images=40, at_phase_end=False)) == [40, 80]
    assert due_after(FIDCallback(None, every_images=0)) == [16, 48, 96]
