"""gan.checkpoint and gan.formats: files written by format 2 load, export, fine-tune and resume; the architecture is
compared in one function."""

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import train
from gan.checkpoint import architecture, architecture_keys, differences, ema_generator_from_checkpoint, upgrade
from gan.export import load_generator
from gan.generator import GeneratorConfig

FORMAT_2 = Path(__file__).parent / "data" / "format2"  # see its README.md


def test_format_2_files_upgrade_to_the_current_layout():
    checkpoint = torch.load(FORMAT_2 / "run.ckpt", weights_only=True)
    assert "base_width" in checkpoint["hyper_parameters"] and "skipped_steps" in checkpoint["state_dict"]
    upgrade(checkpoint)
    hparams, state, meta = checkpoint["hyper_parameters"], checkpoint["state_dict"], checkpoint["safefakes"]
    assert hparams["generator"] == asdict(GeneratorConfig(base_width=8))
    assert hparams["critic"] == {"minibatch_std": False, "output_gain": pytest.approx(2**0.5)}
    assert "base_width" not in hparams and "critic_output_gain" not in hparams
    assert {"guard.skipped_steps", "guard.retried_steps", "critic_steps"} <= set(state) and "skipped_steps" not in state
    assert meta["upgraded_from"] == 2 and upgrade(checkpoint) is checkpoint  # upgrading twice changes nothing


def test_format_2_checkpoint_weights_and_export_give_the_outputs_that_version_gave():
    expected = load_file(FORMAT_2 / "expected.safetensors")
    inputs = [expected[k] for k in ("condition", "mask", "keypoints", "z")]
    generator, meta = ema_generator_from_checkpoint(FORMAT_2 / "run.ckpt")
    weights, _ = ema_generator_from_checkpoint(FORMAT_2 / "weights.ckpt")
    exported = load_generator(FORMAT_2 / "export")
    assert exported.meta["upgraded_from"] == 2 and exported.meta["conditioning"]["box_rounding"] == "floor"
    with torch.no_grad():
        outputs = [generator(*inputs, resolution=16), weights(*inputs, resolution=16), exported(*inputs)]
    for out in outputs:
        # The same code on another CPU may sum in another order: float32 rounding of values near 1 (~1e-6 each).
        torch.testing.assert_close(out, expected["image"], rtol=0, atol=1e-5)


def test_format_2_checkpoint_resumes_and_its_weights_start_a_fine_tuning(tmp_path, demo):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(FORMAT_2 / "run.ckpt", ckpt / "images=00000000024.ckpt")
    config = {
        "seed_everything": 0,
        "model": {"generator": {"base_width": 8}, "ema_half_life_images": 100,
                  "schedule": {"start_resolution": 8, "max_resolution": 16, "fade_images": 8, "stabilize_images": 8,
                               "batch_sizes": {8: 4, 16: 4}, "total_images": 32}},
        "data": {"train_path": str(demo), "num_val": 4, "num_workers": 0},
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False},
        "checkpoint": {"dirpath": str(ckpt), "every_images": 16, "keep_last": 2},
        "fid": {"extractor": None}, "samples": {"every_images": 0}, "export_onnx": False,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert train.main(["--config", str(tmp_path / "c.yaml"), "--ckpt_path", "last"]) == 0
    resumed = torch.load(ckpt / "last.ckpt", weights_only=True)
    assert int(resumed["state_dict"]["images_seen"]) == 32 and resumed["safefakes"]["format_version"] == 3

    tuned = {**config, "model": {**config["model"], "init_from": str(FORMAT_2 / "weights.ckpt")},
             "checkpoint": {"dirpath": str(tmp_path / "tuned")}}
    tuned["model"]["schedule"] = {**config["model"]["schedule"], "total_images": 8}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(tuned))
    assert train.main(["--config", str(tmp_path / "t.yaml")]) == 0


def test_architectures_are_compared_in_one_function():
    ours = {"generator": asdict(GeneratorConfig(base_width=16)), "critic": {"minibatch_std": False},
            "schedule": {"max_resolution": 32}}
    saved = json.loads(json.dumps(ours))  # a round trip through JSON, as in an export
    saved["generator"]["to_rgb_gain"] = 1.4142135623730951 + 1e-16  # floats compared with isclose
    assert differences(saved, ours, architecture_keys(architecture(ours))) == []
    saved["generator"]["latent_channels"] = 8
    assert differences(saved, ours, architecture_keys(architecture(ours))) == [
        ("generator.latent_channels", 8, 32)]
    # A field added to a config later is absent from older files: it takes its default there.
    del saved["generator"]["pixel_norm_eps"]
    assert architecture(saved)["generator"]["pixel_norm_eps"] == 1e-8
