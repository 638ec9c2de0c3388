"""gan.anonymize on datasets (gan.anonymize.files, .photos, .cli): folders mirrored, detections by relative path,
resumable, bad inputs recorded, annotations copied."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from data.demo import HERE as DEMO
from gan.anonymize import main
from gan.anonymize.files import JOURNAL, collect

DETECTIONS = json.loads((DEMO / "annotations.json").read_text())


@pytest.fixture
def tree(tmp_path):
    """photos/ with two sub-folders holding a file of the same name, a YOLO label and a COCO file, and detections
    keyed by relative path."""
    root = tmp_path / "photos"
    (root / "cam1").mkdir(parents=True)
    (root / "cam2").mkdir()
    shutil.copy(DEMO / "photos" / "obama.jpg", root / "cam1" / "frame.jpg")
    shutil.copy(DEMO / "photos" / "biden.jpg", root / "cam2" / "frame.jpg")
    shutil.copy(DEMO / "photos" / "astronaut.jpg", root / "astronaut.jpg")
    (root / "cam1" / "frame.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "coco.json").write_text(json.dumps({"images": [], "annotations": []}))
    detections = {"cam1/frame.jpg": DETECTIONS["obama.jpg"], "cam2/frame.jpg": DETECTIONS["biden.jpg"],
                  "astronaut.jpg": DETECTIONS["astronaut.jpg"]}
    (tmp_path / "det.json").write_text(json.dumps(detections))
    return root, tmp_path / "det.json"


def run(root, det, out, *extra):
    return main(["--model", str(det.parent / "export"), "--input", str(root), "--output", str(out),
                 "--detections", str(det), "--workers", "0", *extra])


@pytest.fixture
def export(random_export, tree):
    shutil.copytree(random_export, tree[1].parent / "export")


def test_a_folder_is_mirrored_and_annotations_travel(tree, export, tmp_path, capsys):
    root, det = tree
    out = tmp_path / "out"
    assert run(root, det, out, "--copy-annotations") == 0
    for relative in ("cam1/frame.jpg", "cam2/frame.jpg", "astronaut.jpg"):
        with Image.open(out / relative) as written, Image.open(root / relative) as source:
            assert written.size == source.size and not np.array_equal(np.asarray(written), np.asarray(source))
    assert (out / "cam1" / "frame.txt").read_text() == (root / "cam1" / "frame.txt").read_text()
    assert json.loads((out / "coco.json").read_text()) == {"images": [], "annotations": []}
    report = json.loads((out / "report.json").read_text())
    assert report["generated"] == 3 and report["failed"] == [] and report["annotations_copied"] == 2
    assert set(report["images"]) == {"cam1/frame.jpg", "cam2/frame.jpg", "astronaut.jpg"}
    assert sorted(p.name for p in root.rglob("*")) == sorted(["cam1", "cam2", "frame.jpg", "frame.jpg",
                                                              "astronaut.jpg", "frame.txt", "coco.json"])
    assert not list(out.rglob(".*.partial*"))  # no temporary file is left


def test_rerunning_skips_complete_outputs_and_overwrite_redoes_them(tree, export, tmp_path, capsys):
    root, det = tree
    out = tmp_path / "out"
    assert run(root, det, out) == 0
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    capsys.readouterr()
    assert run(root, det, out) == 0
    assert "3 of 3 outputs are complete" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == first
    # An output written but not recorded (killed between the rename and the journal line) is redone, and so is
    # one whose input changed.
    lines = (out / JOURNAL).read_text().splitlines()
    (out / JOURNAL).write_text("\n".join(line for line in lines if "astronaut" not in line) + "\n")
    assert run(root, det, out) == 0
    assert "2 of 3 outputs are complete" in capsys.readouterr().out
    assert run(root, det, out, "--overwrite") == 0
    assert "outputs are complete" not in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["generated"] == 3


def test_detections_by_file_name_and_an_ambiguous_name(tree, export, tmp_path, capsys):
    root, det = tree
    by_name = {"frame.jpg": DETECTIONS["obama.jpg"], "astronaut.jpg": DETECTIONS["astronaut.jpg"]}
    det.write_text(json.dumps(by_name))
    assert run(root, det, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "the entry 'frame.jpg' could be any of cam1/frame.jpg, cam2/frame.jpg" in err
    assert not (tmp_path / "out").exists()  # refused before anything is written
    shutil.rmtree(root / "cam2")
    assert run(root, det, tmp_path / "out2") == 0  # unique now: the file name is accepted


def test_bad_inputs_are_recorded_and_strict_stops_at_the_first(tree, export, tmp_path, capsys):
    root, det = tree
    (root / "cam2" / "frame.jpg").write_bytes(b"not a jpeg")
    detections = json.loads(det.read_text())
    detections["gone.jpg"] = []
    det.write_text(json.dumps(detections))
    out = tmp_path / "out"
    assert run(root, det, out) == 1
    report = json.loads((out / "report.json").read_text())
    reasons = {f["path"]: f["reason"] for f in report["failed"]}
    assert "cannot read the photo" in reasons["cam2/frame.jpg"]
    assert "no such file is in the input" in reasons["gone.jpg"]
    assert set(report["images"]) == {"cam1/frame.jpg", "astronaut.jpg"}  # the others were still done
    assert "2 input(s) failed" in capsys.readouterr().err
    assert run(root, det, tmp_path / "strict", "--strict") == 1
    assert "(--strict)" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "strict" / "report.json").read_text())["failed"]) == 1


def test_inputs_that_cannot_work_are_refused_before_any_model_loads(tree, tmp_path, capsys):
    root, det = tree
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(DEMO / "photos" / "obama.jpg", tmp_path / "a" / "x.jpg")
    shutil.copy(DEMO / "photos" / "obama.jpg", tmp_path / "b" / "x.jpg")
    with pytest.raises(Exception, match="would both be written to x.jpg"):
        collect([tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"])
    args = ["--model", str(tmp_path / "no-export"), "--detections", str(det)]
    assert main([*args, "--input", str(root), "--output", str(root / "out")]) == 1
    assert "output_in_input" in capsys.readouterr().err and not (root / "out").exists()
    assert main([*args, "--input", str(tmp_path / "notes.md"), "--output", str(tmp_path / "o")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_decoding_in_worker_processes_changes_no_byte(tree, export, tmp_path):
    root, det = tree
    assert run(root, det, tmp_path / "a", "--seed", "4") == 0
    assert run(root, det, tmp_path / "b", "--seed", "4", "--workers", "2") == 0
    for path in (tmp_path / "a").rglob("*.jpg"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
