from pathlib import Path

import pytest
import torch
import yaml

from gan import Discriminator, Generator

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_paper_config_describes_the_paper_model():
    model = yaml.safe_load((CONFIGS / "deepprivacy.yaml").read_text())["model"]
    assert (model["base_width"], model["max_resolution"]) == (512, 128)
    with torch.device("meta"):
        generator = Generator(model["base_width"], model["max_resolution"], model["latent_channels"])
        discriminator = Discriminator(model["base_width"], model["max_resolution"], model["minibatch_std"])
    assert sum(p.numel() for p in generator.parameters()) == pytest.approx(46.92e6, rel=2e-3)
    assert sum(p.numel() for p in discriminator.parameters()) == pytest.approx(45.53e6, rel=2e-3)
