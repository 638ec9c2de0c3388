import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from gan.evaluate import main


@pytest.fixture(scope="module")
def trained(trained_run, tmp_path_factory, tiny_config, demo):
    """Two tiny runs: the shared one, with FID (onet, real weights), and one without."""
    root = tmp_path_factory.mktemp("fidrun")
    assert train.main(["--config", str(tiny_config(root / "without"))]) == 0
    return {"with": trained_run, "without": root / "without"}, demo


def test_fid_is_logged_during_training(trained):
    runs, _ = trained
    events = EventAccumulator(str(runs["with"] / "run" / "logs"), size_guidance={"scalars": 0}).Reload()
    tags = events.Tags()["scalars"]
    assert {"metrics/fid/onet/8px", "metrics/fid/onet/16px", "metrics/fid/onet/32px", "perf/fid_share"} <= set(tags)
    assert "metrics/fid/onet" not in tags  # no curve that mixes resolutions
    # every 40 images (40, 80) and at the end of each stabilisation phase (16, 48) and of training (96)
    steps = {r: [e.step for e in events.Scalars(f"metrics/fid/onet/{r}px")] for r in (8, 16, 32)}
    assert steps == {8: [16], 16: [40, 48], 32: [80, 96]}  # step = images seen
    assert all(e.value > 0 for r in (8, 16, 32) for e in events.Scalars(f"metrics/fid/onet/{r}px"))


def test_checkpoints_do_not_carry_the_extractor(trained):
    runs, _ = trained
    with_fid, without = (runs[name] / "ckpt" / "last.ckpt" for name in ("with", "without"))
    assert abs(with_fid.stat().st_size - without.stat().st_size) < 10_000  # ONet's weights are 1.5 MB
    keys = torch.load(with_fid, weights_only=True)["state_dict"].keys()
    assert not any("dense5" in k or "prelu" in k for k in keys)


def test_evaluate_a_checkpoint(trained, tmp_path, capsys):
    runs, data = trained
    report_path = tmp_path / "fid.json"
    code = main(["--checkpoint", str(runs["with"] / "ckpt" / "last.ckpt"), "--data", str(data), "--num", "20",
                 "--batch-size", "8", "--report", str(report_path), "--tensorboard", str(tmp_path / "tb")])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["resolution"] == 32 and report["num_images"] == 20 and report["extractor"] == "onet"
    assert report["images_seen"] == 96 and set(report["fid"]) == {"z=zero", "z=random"}
    assert all(v > 0 for v in report["fid"].values())
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert "eval/fid/onet/32px/z=zero" in events.Tags()["scalars"]
    assert main(["--checkpoint", str(runs["with"] / "ckpt" / "last.ckpt"), "--data", str(data), "--num", "20",
                 "--resolution", "16"]) == 0
    assert '"resolution": 16' in capsys.readouterr().out


def test_evaluate_refuses_what_it_cannot_use(tmp_path, trained, capsys):
    _, data = trained
    assert main(["--checkpoint", str(tmp_path / "nope.ckpt"), "--data", str(data)]) == 1
    assert "no checkpoint file at" in capsys.readouterr().err
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    assert main(["--checkpoint", str(tmp_path / "other.ckpt"), "--data", str(data)]) == 1
    assert "not a SafeFakes training checkpoint" in capsys.readouterr().err
