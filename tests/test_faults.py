"""Faults a long run meets: kill -9, SIGTERM, a dying DDP rank, damaged checkpoints, a full or unwritable disk and
wrong resumption input. Each resumes with the same command, or stops with one line that names the file or key."""

import shutil
import sys
from pathlib import Path

import pytest
import torch

import train
from gan.training.checkpointing import checksum_path, sha256_file, verify

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import faults  # noqa: E402 (bench/faults.py: the campaign the benchmark runs with more trials)


def dump(folder: Path) -> list:
    return [{"class_path": "tests.helpers.DumpWeights", "init_args": {"folder": str(folder / "w")}}]


def weights(folder: Path) -> dict:
    return torch.load(folder / "w" / "rank0.pt", weights_only=True)


def same_networks(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return all(torch.equal(wa[name], wb[name]) for name in ("G", "D", "G_ema", "images_seen"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_config) -> Path:
    """An uninterrupted run of 64 images (checkpoints at 16 (growth), 40, 48 (growth), 64)."""
    folder = tmp_path_factory.mktemp("straight")
    assert train.main(["--config", str(tiny_config(folder, total=64, callbacks=dump(folder))),
                       "--export_onnx", "false"]) == 0
    return folder


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, tiny_config) -> Path:
    """A run stopped at 48 images: images=40, images=48 and last.ckpt (a link to images=48), each with a checksum."""
    folder = tmp_path_factory.mktemp("stopped")
    assert train.main(["--config", str(tiny_config(folder, total=48)), "--export_onnx", "false"]) == 0
    return folder / "ckpt"


def test_the_kill_campaign_resumes_every_run_bit_identically(tmp_path):
    """A few trials of ``bench/faults.py`` (it runs more): kill -9 with output to a file, and with output to a terminal
    during a checkpoint write; SIGTERM; a DDP rank killed."""
    results = faults.campaign(tmp_path, trials=2, sigterm_trials=1, ddp_trials=1, seed=0)
    print(faults.table(results))
    for r in results:
        assert r["resumed"] and r["bit_identical"] and r["newest_complete"], r
        assert r["lost"] <= faults.EVERY + 8, r  # the images since the last checkpoint, plus the batch in flight
    kills = [r for r in results if r["kind"] == "kill -9"]
    assert [(r["output"], r["during_save"]) for r in kills] == [("file", False), ("terminal", True)]
    assert "train 96/96 img (100 %)" in Path(kills[0]["log"]).read_text()  # plain lines in a file
    bar = Path(kills[1]["log"]).read_bytes().decode(errors="replace")
    assert "\r" in bar and "img/s" in bar and "96/96 img" in bar  # the tqdm bar in a terminal
    sigterm = next(r for r in results if r["kind"] == "SIGTERM")
    assert sigterm["status"] == 143 and sigterm["lost"] == 0  # a checkpoint at the images seen when stopped
    ddp = next(r for r in results if r["kind"].startswith("DDP"))
    # Rank 1 killed: Lightning's launcher polls its children every 5 s and then kills the whole job.
    assert ddp["others_stopped_s"] is not None and ddp["others_stopped_s"] < 30, ddp
    ranks = [faults.final_weights(tmp_path / "reference-2", rank) for rank in (0, 1)]
    assert faults.identical(*ranks) and int(ranks[0]["images_seen"]) == faults.TOTAL  # DDP ranks agree


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size * 2 // 3)


def empty(path: Path) -> None:
    path.write_bytes(b"")


DAMAGES = {
    # what happens to last.ckpt (and, where the damage is to the file itself, to images=48, its other name)
    "truncated": (lambda ckpt: [truncate(ckpt / n) for n in ("last.ckpt", "images=00000000048.ckpt")],
                  {"last.ckpt": "its sha256 differs", "images=00000000048.ckpt": "its sha256 differs"}, 40),
    "flipped bytes": (lambda ckpt: flip_bytes(ckpt / "last.ckpt"), {"last.ckpt": "its sha256 differs"}, 48),
    "zero length": (lambda ckpt: [empty(ckpt / n) for n in ("last.ckpt", "images=00000000048.ckpt")],
                    {"last.ckpt": "empty file", "images=00000000048.ckpt": "empty file"}, 40),
    "a link to a deleted file": (
        lambda ckpt: [(ckpt / "last.ckpt").unlink(), (ckpt / "last.ckpt").symlink_to(ckpt / "images=00000000056.ckpt")],
        {"last.ckpt": "a link to a missing file"}, 48),
    "truncated, written before checksums": (lambda ckpt: [checksum_path(ckpt / "last.ckpt").unlink(),
                                                          truncate(ckpt / "last.ckpt")], {"last.ckpt": "unreadable"},
                                                          48),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_newest_checkpoint_is_skipped_and_kept(tmp_path, tiny_config, stopped, straight, capsys, damage):
    apply, skipped, resumed_from = DAMAGES[damage]
    ckpt = tmp_path / "ckpt"
    shutil.copytree(stopped, ckpt, symlinks=True)
    apply(ckpt)
    damaged = {name: sha256_file(ckpt / name) for name in skipped if (ckpt / name).is_file()}
    capsys.readouterr()
    config = tiny_config(tmp_path, total=64, callbacks=dump(tmp_path))
    assert train.main(["--config", str(config), "--ckpt_path", "last", "--export_onnx", "false"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ckpt_path=last")]
    assert len(lines) == len(skipped) + 1, lines  # one line per skipped file, then the one resumed from
    for line, (name, reason) in zip(lines, skipped.items(), strict=False):  # the last line: resumed from
        assert line.startswith(f"ckpt_path=last: skipped {ckpt / name}: {reason}") and f"kept as {name}.damaged" in line
    assert lines[-1].startswith("ckpt_path=last: resuming from") and f"({resumed_from} images)" in lines[-1]
    for name, digest in damaged.items():  # never deleted: the same bytes, set aside
        assert sha256_file(ckpt / f"{name}.damaged") == digest
    assert same_networks(tmp_path, straight)  # the fallback loses images, not exactness
    assert verify(ckpt / "last.ckpt") is None


def test_no_whole_checkpoint_is_an_error_not_a_fresh_start(tmp_path, tiny_config, stopped, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(stopped, ckpt)
    for path in ckpt.glob("*.ckpt"):
        empty(path)
    assert train.main(["--config", str(tiny_config(tmp_path, total=64)), "--ckpt_path", "last"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"ckpt_path=last: no checkpoint in {ckpt} is whole" in err and len(err.splitlines()) == 1
    assert len(list(ckpt.glob("*.damaged"))) == 3


def test_an_unwritable_checkpoint_folder_is_named_before_training(tmp_path, tiny_config, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = tiny_config(tmp_path)
    assert train.main(["--config", str(config), "--checkpoint.dirpath", str(blocker / "ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: checkpoint.dirpath: cannot write to {blocker / 'ckpt'} (Not a directory)"
    # A disk without room for one checkpoint (simulated: shutil reports 1 MiB free).
    free = shutil.disk_usage(tmp_path)._replace(free=2**20)
    monkeypatch.setattr("gan.training.checkpointing.shutil.disk_usage", lambda path: free)
    monkeypatch.setattr("gan.training.cli.checkpoint_bytes", lambda model: 5 * 2**20)
    assert train.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"checkpoint.dirpath: {tmp_path / 'ckpt'} has 1 MiB free; one checkpoint of this model needs about 5 MiB" \
        in err and len(err.splitlines()) == 1


def test_the_size_estimate_covers_a_real_checkpoint(stopped):
    """The free-space check asks for at least the tensors a checkpoint holds (model and both Adam states), and not
    more than the file takes (the rest is metadata, a few hundred kB whatever the width)."""
    from gan.generator import GeneratorConfig
    from gan.training.cli import checkpoint_bytes
    from gan.training.module import DeepPrivacyGAN
    from gan.training.schedule import Schedule

    checkpoint = torch.load(stopped / "last.ckpt", weights_only=True)
    moments = [t for state in checkpoint["optimizer_states"] for p in state["state"].values() for t in p.values()]
    tensors = [*checkpoint["state_dict"].values(), *moments]
    held = sum(t.numel() * t.element_size() for t in tensors if t.dim() > 0)
    model = DeepPrivacyGAN(GeneratorConfig(8), schedule=Schedule(8, 32, 16, 16, {8: 8, 16: 8, 32: 4}, 48))
    assert held <= checkpoint_bytes(model) <= (stopped / "last.ckpt").stat().st_size


def test_a_save_that_fails_mid_run_stops_and_keeps_earlier_checkpoints(tmp_path, tiny_config, straight, capsys):
    full_disk = [{"class_path": "tests.helpers.FullDisk", "init_args": {"after": 2}}]  # the 3rd save: 48 images
    config = tiny_config(tmp_path, total=64, callbacks=full_disk)
    assert train.main(["--config", str(config), "--export_onnx", "false"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    ckpt = tmp_path / "ckpt"
    assert err == (f"error: could not write checkpoint {ckpt / 'images=00000000048.ckpt'} (No space left on device); "
                   f"the earlier checkpoints in {ckpt} are intact: make room and resume with --ckpt_path last")
    assert sorted(p.name for p in ckpt.glob("*.ckpt")) == ["images=00000000016.ckpt", "images=00000000040.ckpt",
                                                          "last.ckpt"]
    assert all(verify(path) is None for path in ckpt.glob("*.ckpt")) and not list(ckpt.glob("*.tmp"))
    room = tiny_config(tmp_path, total=64, callbacks=dump(tmp_path))
    assert train.main(["--config", str(room), "--ckpt_path", "last", "--export_onnx", "false"]) == 0
    assert same_networks(tmp_path, straight)


@pytest.mark.parametrize("flags, message", [
    (["--ckpt_path", "{ckpt}/images=00000000099.ckpt"],
     "ckpt_path: no checkpoint file at {ckpt}/images=00000000099.ckpt"),
    (["--ckpt_path", "last", "--model.generator.base_width", "16"],
     "ckpt_path {ckpt}/last.ckpt: the checkpoint was trained with model.generator.base_width = 8 (this run has 16)"),
    (["--ckpt_path", "last", "--model.schedule.fade_images", "8"],
     "ckpt_path {ckpt}/last.ckpt: the checkpoint was trained with model.schedule.fade_images = 16 (this run has 8)"),
    (["--ckpt_path", "{ckpt}/last.ckpt.sha256"], "ckpt_path {ckpt}/last.ckpt.sha256: unreadable"),
])
def test_bad_resumption_input_is_one_line(tmp_path, tiny_config, stopped, capsys, flags, message):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(stopped, ckpt)
    flags = [flag.format(ckpt=ckpt) for flag in flags]
    assert train.main(["--config", str(tiny_config(tmp_path, total=64)), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: " + message.format(ckpt=ckpt)) and len(err.splitlines()) == 1, err
