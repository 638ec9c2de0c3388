from pathlib import Path

import pytest
import torch
import yaml

import train
from gan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def resolved(config: str, capsys) -> dict:
    """The configuration as the real CLI resolves it (``--print_config`` parses and type-checks every key)."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--config", str(CONFIGS / config), "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("config", ["deepprivacy.yaml", "demo.yaml"])
def test_configs_parse_through_the_cli(config, capsys):
    resolved_config = resolved(config, capsys)
    assert {"model", "data", "trainer", "checkpoint", "fid", "samples", "ckpt_path"} <= set(resolved_config)
    assert resolved_config["ckpt_path"] == "last"


def test_paper_config_describes_the_paper_model(capsys):
    model = resolved("deepprivacy.yaml", capsys)["model"]
    assert model["generator"]["base_width"] == 512 and model["schedule"]["max_resolution"] == 128
    assert {int(k): v for k, v in model["schedule"]["batch_sizes"].items()} == {8: 256, 16: 256, 32: 128, 64: 96,
                                                                                128: 64}
    with torch.device("meta"):
        generator = Generator(GeneratorConfig(**model["generator"]), model["schedule"]["max_resolution"])
        discriminator = Discriminator(DiscriminatorConfig(**model["critic"]), model["generator"]["base_width"],
                                      model["schedule"]["max_resolution"])
    assert sum(p.numel() for p in generator.parameters()) == pytest.approx(46.92e6, rel=2e-3)
    assert sum(p.numel() for p in discriminator.parameters()) == pytest.approx(45.53e6, rel=2e-3)
