import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train

ROOT = Path(__file__).resolve().parents[1]
TAGS = ["loss/D/wgan", "loss/D/gp", "loss/D/epsilon", "loss/G", "progress/resolution", "progress/alpha",
        "progress/images_seen", "perf/images_per_second"]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_tiny_run_grows_twice_and_logs(tmp_path, tiny_config, precision):
    config = tiny_config(tmp_path, precision=precision)
    assert train.main(["--config", str(config)]) == 0
    checkpoint = load(tmp_path / "ckpt" / "last.ckpt")
    state = checkpoint["state_dict"]
    assert int(state["images_seen"]) == 96 and int(state["resolution"]) == 32 and int(state["guard.skipped_steps"]) == 0
    assert checkpoint["safefakes"]["config"]["model"]["generator"]["base_width"] == 8
    assert len(checkpoint["optimizer_states"]) == 2
    saved = sorted(p.name for p in (tmp_path / "ckpt").glob("images=*.ckpt"))
    assert saved == ["images=00000000080.ckpt", "images=00000000096.ckpt"]  # keep_last 2 of 16, 40, 48, 80, 96
    events = EventAccumulator(str(tmp_path / "run" / "logs"), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert set(TAGS) <= set(events.Tags()["scalars"])
    resolutions = {e.value for e in events.Scalars("progress/resolution")}
    assert resolutions == {8.0, 16.0, 32.0}
    alphas = [e.value for e in events.Scalars("progress/alpha")]
    assert 0.0 in alphas and any(0 < a < 1 for a in alphas)  # the fades were logged
    assert all(torch.isfinite(torch.tensor(e.value)) for e in events.Scalars("loss/D/gp"))
    grids = events.Images("samples/condition_generated_real")
    assert len(grids) >= 3 and (grids[-1].width, grids[-1].height) == (6 * 66 + 2, 14 + 2 * 66 + 2)  # header row


def test_exact_resume_in_the_middle_of_a_fade(tmp_path, tiny_config, capsys):
    straight = tiny_config(tmp_path / "a", callbacks=[
        {"class_path": "tests.helpers.DumpWeights", "init_args": {"folder": str(tmp_path / "a" / "w")}}])
    assert train.main(["--config", str(straight)]) == 0
    # Interrupted at 56 images: the 32 px fade runs from 48 to 64.
    interrupted = tiny_config(tmp_path / "b", callbacks=[
        {"class_path": "tests.helpers.InterruptAt", "init_args": {"images": 56}},
        {"class_path": "tests.helpers.DumpWeights", "init_args": {"folder": str(tmp_path / "b" / "w")}}])
    assert train.main(["--config", str(interrupted)]) == 143
    stopped = load(tmp_path / "b" / "ckpt" / "last.ckpt")
    assert int(stopped["state_dict"]["images_seen"]) == 56 and stopped["safefakes"]["stage"]["phase"] == "fade"
    # Resumed in the middle of Lightning's epoch, with the progress display on: stdout is not a terminal under
    # pytest, so it prints plain lines (as under SLURM, nohup or `> log`).
    resumed = tiny_config(tmp_path / "b", enable_progress_bar=True, callbacks=[
        {"class_path": "tests.helpers.DumpWeights", "init_args": {"folder": str(tmp_path / "b" / "w")}}])
    capsys.readouterr()
    assert train.main(["--config", str(resumed), "--ckpt_path", "last"]) == 0
    out = capsys.readouterr().out
    assert "ckpt_path=last: resuming from" in out and "train 96/96 img (100 %)" in out, out
    a, b = torch.load(tmp_path / "a" / "w" / "rank0.pt"), torch.load(tmp_path / "b" / "w" / "rank0.pt")
    for name in ("G", "D", "G_ema", "images_seen"):
        assert torch.equal(a[name], b[name]), name


def test_a_finished_run_trains_on_when_total_images_grows(tmp_path, tiny_config, capsys):
    dump = {"class_path": "tests.helpers.DumpWeights"}
    straight = tiny_config(tmp_path / "a", total=64, callbacks=[{**dump,
                                                                 "init_args": {"folder": str(tmp_path / "wa")}}])
    assert train.main(["--config", str(straight), "--export_onnx", "false"]) == 0
    assert train.main(["--config", str(tiny_config(tmp_path / "b", total=48)), "--export_onnx", "false"]) == 0
    longer = tiny_config(tmp_path / "b", total=64, callbacks=[{**dump, "init_args": {"folder": str(tmp_path / "wb")}}])
    assert train.main(["--config", str(longer), "--ckpt_path", "last", "--export_onnx", "false"]) == 0
    a, b = torch.load(tmp_path / "wa" / "rank0.pt"), torch.load(tmp_path / "wb" / "rank0.pt")
    for name in ("G", "D", "G_ema", "images_seen"):  # as if it had been asked for 64 images from the start
        assert torch.equal(a[name], b[name]), name
    capsys.readouterr()
    assert train.main(["--config", str(longer), "--ckpt_path", "last", "--export_onnx", "false"]) == 0  # complete
    assert "Training complete: 64 images" in capsys.readouterr().out
    assert int(load(tmp_path / "b" / "ckpt" / "last.ckpt")["state_dict"]["images_seen"]) == 64


def test_a_run_without_a_logger_writes_nothing_into_the_working_directory(tmp_path, tiny_config, monkeypatch):
    config = tiny_config(tmp_path / "run", total=16)
    monkeypatch.chdir(tmp_path)
    assert train.main(["--config", str(config), "--trainer.logger", "false", "--export_onnx", "false"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert load(tmp_path / "run" / "ckpt" / "last.ckpt")["safefakes"]["config"]["model"]["generator"]["base_width"] == 8


def test_non_finite_steps_are_skipped_and_counted(tmp_path, tiny_config):
    config = tiny_config(tmp_path, total=24, precision="bf16-mixed", callbacks=[
        {"class_path": "tests.helpers.PoisonCritic"},
        {"class_path": "tests.helpers.DumpWeights", "init_args": {"folder": str(tmp_path / "w")}}])
    assert train.main(["--config", str(config), "--model.nonfinite_step", "skip"]) == 0
    state = load(tmp_path / "ckpt" / "last.ckpt")["state_dict"]
    assert int(state["guard.skipped_steps"]) == 2 * 3  # 3 iterations of 8 images, D and G steps both skipped
    events = EventAccumulator(str(tmp_path / "run" / "logs")).Reload()
    assert events.Scalars("progress/skipped_steps")[-1].value == 6
    weights = torch.load(tmp_path / "w" / "rank0.pt")
    assert torch.equal(weights["G"], weights["G_ema"])  # G never stepped, so its average never moved


def test_bad_configuration_names_the_key(tmp_path, tiny_config, capsys):
    config = tiny_config(tmp_path)
    assert train.main(["--config", str(config), "--data.train_path", str(tmp_path / "missing")]) == 2
    assert "data.train_path: no dataset directory" in capsys.readouterr().err
    assert train.main(["--config", str(config), "--trainer.devices", "3", "--trainer.strategy",
                       "ddp_find_unused_parameters_true"]) == 2
    assert "model.schedule.batch_sizes[8] = 8 is not divisible by the 3 processes" in capsys.readouterr().err
    assert train.main(["--config", str(config), "--trainer.devices", "2", "--trainer.strategy", "ddp"]) == 2
    assert "trainer.strategy: use ddp_find_unused_parameters_true" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--config", str(config), "--model.base_widht", "16"])
    assert "base_widht" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_resolution must be a power of two"):
        train.main(["--config", str(config), "--model.schedule.max_resolution", "48"])


FP16_ON_CPU = """
trainer:
  precision: null
  plugins:
    - class_path: pytorch_lightning.plugins.MixedPrecision
      init_args:
        precision: 16-mixed
        device: cpu
        scaler: {class_path: torch.amp.GradScaler, init_args: {device: cpu}}
"""


def test_fp16_with_a_grad_scaler_trains_and_counts_its_skips(tmp_path, tiny_config):
    """'16-mixed' on CPU silently becomes bf16; this plugin gives real fp16 autocast and a GradScaler."""
    (tmp_path / "fp16.yaml").write_text(FP16_ON_CPU)
    config = tiny_config(tmp_path)
    assert train.main(["--config", str(config), "--config", str(tmp_path / "fp16.yaml"), "--export_onnx", "false"]) == 0
    checkpoint = load(tmp_path / "ckpt" / "last.ckpt")
    state = checkpoint["state_dict"]
    assert int(state["images_seen"]) == 96
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    skipped, scale = int(state["guard.skipped_steps"]), checkpoint["MixedPrecision"]["scale"]
    # Every skip halves the scale from 65536; PixelNorm's 1/sqrt(eps) gradient on the blank face region
    # overflows fp16 until the scale is near 1. The skips are counted and training goes on.
    assert 0 < skipped < 36 and scale == 65536 * 0.5**skipped


def test_format_1_checkpoints_resume_only_with_their_constants(tmp_path, tiny_config, capsys):
    """Format 1 was trained with gain 1.0 on to_rgb and the critic's output; the paper's sqrt(2) is the default now."""
    config = tiny_config(tmp_path, total=24)
    assert train.main(["--config", str(config), "--export_onnx", "false"]) == 0
    checkpoint = load(tmp_path / "ckpt" / "last.ckpt")
    # Format 1's layout: flat architecture hyper-parameters without the gains and eps, no retry/critic-step counters.
    hparams, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
    generator, critic = hparams.pop("generator"), hparams.pop("critic")
    hparams.update(base_width=generator["base_width"], latent_channels=generator["latent_channels"],
                   minibatch_std=critic["minibatch_std"])
    state["skipped_steps"] = state.pop("guard.skipped_steps")
    del state["guard.retried_steps"], state["critic_steps"]
    checkpoint["safefakes"]["format_version"] = 1
    torch.save(checkpoint, tmp_path / "ckpt" / "last.ckpt")
    for checksum in (tmp_path / "ckpt").glob("*.sha256"):  # format 1 came before checksums
        checksum.unlink()
    more = tiny_config(tmp_path, total=40)
    assert train.main(["--config", str(more), "--ckpt_path", "last", "--export_onnx", "false"]) == 2
    err = capsys.readouterr().err
    assert "format 1" in err and "--model.generator.to_rgb_gain 1.0 --model.critic.output_gain 1.0" in err
    assert train.main(["--config", str(more), "--ckpt_path", "last", "--export_onnx", "false",
                       "--model.generator.to_rgb_gain", "1.0", "--model.critic.output_gain", "1.0"]) == 0
    from gan.checkpoint import ema_generator_from_checkpoint

    generator, meta = ema_generator_from_checkpoint(tmp_path / "ckpt" / "images=00000000024.ckpt")
    assert meta["upgraded_from"] == 1 and generator.config.to_rgb_gain == 1.0  # evaluation/export use its constants


def test_a_run_prints_progress_lines_a_summary_and_no_warning(tmp_path, tiny_config):
    """stdout is a pipe here, as in CI or `> log`: plain lines, no carriage returns, no warning."""
    config = tiny_config(tmp_path, fid="onet", enable_progress_bar=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "default"}
    result = subprocess.run([sys.executable, "train.py", "--config", str(config)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "\r" not in output and "Warning" not in output and "Trainer.fit" not in output, output
    assert "train 48/96 img (50 %) | res 16px alpha 1.00 phase stabilize D " in result.stdout
    assert "Training complete: 96 images in" in result.stdout
    assert f"Last checkpoint: {tmp_path / 'ckpt' / 'last.ckpt'}" in result.stdout
    assert "Last FID (onet features; not comparable to Inception FID): 8 px" in result.stdout
    assert f"TensorBoard: tensorboard --logdir {tmp_path / 'run' / 'logs'}" in result.stdout


def test_newcomer_errors_are_one_line(tmp_path, tiny_config, capsys):
    assert train.main([]) == 2
    assert "python train.py --config configs/demo.yaml" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert train.main(["--config", str(ROOT / "configs" / "deepprivacy.yaml")]) == 2
        err = capsys.readouterr().err.strip()
        assert "no GPU was found" in err and "--trainer.accelerator cpu" in err and len(err.splitlines()) == 1
    assert train.main(["--config", str(tiny_config(tmp_path)), "--data.train_path", str(tmp_path / "fdf")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"python -m data.convert FDF_ROOT {tmp_path / 'fdf'} --split train" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("flags, expected", [
    ([], {"__bool__ in step": 2}),  # StepGuard.step: the finite-gradient check of each optimizer
    (["--model.fused_adam", "true"], {"__bool__ in retry": 1}),  # StepGuard.retry: one flag, retry the batch?
    (["--model.fused_adam", "true", "--model.nonfinite_step", "skip"], {}),
])
def test_a_training_step_reads_few_values_back_from_the_device(tmp_path, tiny_config, capsys, flags, expected):
    """Counted on CPU: every tensor value a step reads on the host, by the gan function that asked. On a GPU each is
    a wait for the device, except foreach Adam's step counters, which torch keeps on the CPU."""
    from collections import Counter

    from tests.helpers import CountHostReads

    config = tiny_config(tmp_path, total=32, log_every_n_steps=1000, callbacks=[
        {"class_path": "tests.helpers.CountHostReads", "init_args": {"batch_idx": 2}}])
    assert train.main(["--config", str(config), "--samples.every_images", "0", "--export_onnx", "false", *flags]) == 0
    reads = Counter(CountHostReads.reads)
    print(f"host reads in one training step: {dict(reads)}")
    device_reads = {name: count for name, count in reads.items() if name != "item in step"}
    # The stage, the seed, the growth test and the lazy penalty's counter come from host-side counters; losses are
    # read only on logging steps; fused Adam skips a non-finite update on the device.
    assert device_reads == expected
