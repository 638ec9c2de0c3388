"""Shared fixtures: the demo set built once per run, a tiny training configuration, a finished tiny run."""

from pathlib import Path

import pytest
import torch
import yaml

import train
from data.demo import build_demo


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """The demo set with 3 variants per photo: 24 faces of 6 people, in the prepared format."""
    out = tmp_path_factory.mktemp("demo") / "prepared"
    build_demo(out, variants_per_face=3)
    return out


@pytest.fixture(scope="session")
def demo_72(tmp_path_factory) -> Path:
    """The demo set with 11 variants per photo: 72 faces."""
    out = tmp_path_factory.mktemp("demo72") / "prepared"
    build_demo(out, variants_per_face=11)
    return out


@pytest.fixture(scope="session")
def tiny_config(demo):
    """``tiny_config(folder, total=96, callbacks=None, fid=None, **trainer)`` writes a config file and returns its
    path."""

    def make(folder: Path, total: int = 96, callbacks: list | None = None, fid: str | None = None,
             **trainer) -> Path:
        """8 -> 16 -> 32 px at width 8 in a few seconds: growth at 16 and 48 images."""
        config = {
            "seed_everything": 0,
            "model": {
                "generator": {"base_width": 8},
                "ema_half_life_images": 100,
                "schedule": {"start_resolution": 8, "max_resolution": 32, "fade_images": 16, "stabilize_images": 16,
                             "batch_sizes": {8: 8, 16: 8, 32: 4}, "total_images": total},
            },
            "data": {"train_path": str(demo), "num_val": 8, "num_workers": 0},
            "trainer": {
                "accelerator": "cpu", "devices": 1, "precision": "32-true", "log_every_n_steps": 1,
                "enable_progress_bar": False, "enable_model_summary": False,
                "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                           "init_args": {"save_dir": str(folder), "name": "run", "version": "logs"}},
                "callbacks": callbacks or [],
                **trainer,
            },
            "checkpoint": {"dirpath": str(folder / "ckpt"), "every_images": 40, "keep_last": 2},
            "fid": {"extractor": fid},
            "samples": {"num": 4, "every_images": 32},
        }
        path = folder / "config.yaml"
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        return path

    return make


@pytest.fixture(scope="session")
def random_export(tmp_path_factory) -> Path:
    """An export of an untrained generator (c = 16, 32 px, seed 0), with its ONNX file."""
    from gan.export import export
    from gan.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    return export(Generator(GeneratorConfig(16), 32), tmp_path_factory.mktemp("random") / "export", "floor")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_config) -> Path:
    """A finished tiny run (FID with ONet, privacy on 8 faces from 16 px, every 40 images); ``ckpt/`` holds its
    checkpoints and export."""
    root = tmp_path_factory.mktemp("trained") / "run"
    privacy = ["--privacy.num", "8", "--privacy.every_images", "40", "--privacy.min_resolution", "16"]
    assert train.main(["--config", str(tiny_config(root, fid="onet")), "--fid.every_images", "40", *privacy]) == 0
    return root
