"""``python -m gan.anonymize --devices N`` (gan.training.sharded): Trainer.predict with DDP over 2 CPU processes
(gloo) writes the outputs a single process writes, records failures of every rank, and resumes with any count."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data.demo import HERE as DEMO
from data.demo.clip import make_clip
from gan.anonymize import main
from gan.anonymize.files import Item
from gan.training.sharded import shard

ROOT = Path(__file__).resolve().parents[1]


def test_shards_partition_the_inputs_and_spread_photos_and_videos():
    items = [Item(Path(f"{i}.mp4" if i % 3 == 0 else f"{i}.jpg"), str(i), "video" if i % 3 == 0 else "photo")
             for i in range(11)]
    shards = [shard(items, rank, 3) for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))  # each input once: no padding, no repeat
    for indices in shards:
        assert len([i for i in indices if items[i].kind == "video"]) in (1, 2)  # 4 videos over 3 ranks
        assert len([i for i in indices if items[i].kind == "photo"]) in (2, 3)  # 7 photos over 3 ranks
    assert shard(items, 1, 3) == shards[1]  # deterministic
    assert shard(items[:1], 1, 2) == []  # a rank may have nothing to do


@pytest.fixture(scope="module")
def job(tmp_path_factory, random_export):
    """Five photos in two folders, one unreadable photo, a short video, and their detections."""
    folder = tmp_path_factory.mktemp("sharded")
    root = folder / "in"
    (root / "cam").mkdir(parents=True)
    faces = json.loads((DEMO / "annotations.json").read_text())
    detections = {}
    for i, name in enumerate(["obama.jpg", "biden.jpg", "astronaut.jpg", "grace_hopper.jpg", "obama2.jpg"]):
        relative = f"cam/{name}" if i % 2 else name
        shutil.copy(DEMO / "photos" / name, root / relative)
        detections[relative] = faces[name]
    (root / "cam" / "broken.jpg").write_bytes(b"not a jpeg")
    detections["cam/broken.jpg"] = []
    detections["clip.mp4"] = make_clip(root / "clip.mp4", frames=6, fps=5, canvas=(240, 176), scale=0.3)
    (folder / "det.json").write_text(json.dumps(detections))
    shutil.copytree(random_export, folder / "export")
    return folder


def command(folder: Path, out: str, *extra: str) -> list[str]:
    return ["--model", str(folder / "export"), "--input", str(folder / "in"), "--output", str(folder / out),
            "--detections", str(folder / "det.json"), "--workers", "0", "--seed", "5", *extra]


def run_module(args: list[str], log: Path) -> int:
    """``python -m gan.anonymize`` in a fresh process, its output to a file (Lightning relaunches the same command
    for rank 1)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "w") as handle:
        return subprocess.run([sys.executable, "-m", "gan.anonymize", *args], cwd=ROOT, env=env, stdout=handle,
                              stderr=subprocess.STDOUT, timeout=300).returncode


def test_two_processes_write_what_one_writes(job, capsys):
    assert main(command(job, "one")) == 1  # the broken photo fails the job
    capsys.readouterr()
    assert run_module(command(job, "two", "--devices", "2"), job / "two.log") == 1
    log = (job / "two.log").read_text()
    assert "Warning" not in log and "warn" not in log.lower(), log
    assert "1 input(s) failed" in log
    outputs = sorted(p.relative_to(job / "one") for p in (job / "one").rglob("*") if p.suffix in (".jpg", ".mp4"))
    assert len(outputs) == 6 and Path("clip.mp4") in outputs
    for relative in outputs:  # the same latents (seed, path, face) and the same arithmetic: the same bytes
        assert (job / "two" / relative).read_bytes() == (job / "one" / relative).read_bytes(), relative
    one, two = (json.loads((job / name / "report.json").read_text()) for name in ("one", "two"))
    assert two["failed"] == one["failed"] == [{"path": "cam/broken.jpg", "reason": one["failed"][0]["reason"]}]
    assert two["images"] == one["images"] and two["videos"].keys() == one["videos"].keys() == {"clip.mp4"}
    assert two["generated"] == one["generated"] > 6  # the photos' faces and one per video frame
    journals = sorted(p.name for p in (job / "two").glob(".anonymize*.jsonl"))
    assert journals == [".anonymize.1.jsonl", ".anonymize.jsonl"]  # one per rank

    # Resumed by a single process: every output that either rank recorded is complete.
    assert main(command(job, "two")) == 1  # the broken photo is tried again, and fails again
    assert "6 of 7 outputs are complete" in capsys.readouterr().out


def test_strict_stops_every_rank_and_rank_0_still_reports(job):
    assert run_module(command(job, "strict", "--devices", "2", "--strict"), job / "strict.log") == 1
    log = (job / "strict.log").read_text()
    assert "broken.jpg: cannot read the photo" in log and "(--strict)" in log, log
    report = json.loads((job / "strict" / "report.json").read_text())
    assert [f["path"] for f in report["failed"]] == ["cam/broken.jpg"]
    assert not (job / "strict" / ".anonymize.stop").exists()


def test_devices_need_the_module_entry_point(job, capsys):
    with pytest.raises(SystemExit):
        main(command(job, "x", "--devices", "2"))
    assert "use python -m gan.anonymize" in capsys.readouterr().err
