"""The downstream experiment (gan.privacy.downstream): detectors trained on anonymised demo photos, tested on the
originals; the WIDER FACE reader (data.wider) and the HOG trainer (data.trainable_detector)."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from data.demo import HERE as DEMO
from data.demo.split import write_split
from data.record import DataError
from data.trainable_detector import DlibHogTrainer
from data.wider import read_wider
from gan.privacy.downstream import average_precision, main, photo_set, with_keypoints

FACES = json.loads((DEMO / "annotations.json").read_text())
VAL = ("grace_hopper.jpg", "obama2.jpg")


@pytest.fixture
def split(tmp_path):
    """Four demo photos to train on, two to test on, with their detections files."""
    for part in ("train", "val"):
        (tmp_path / part).mkdir()
    tables = {"train": {}, "val": {}}
    for name, faces in FACES.items():
        part = "val" if name in VAL else "train"
        shutil.copy(DEMO / "photos" / name, tmp_path / part / name)
        tables[part][name] = faces
    for part, table in tables.items():
        (tmp_path / f"{part}.json").write_text(json.dumps(table))
    return tmp_path


def command(root, *extra):
    return ["--train", str(root / "train"), "--train-detections", str(root / "train.json"), "--val",
            str(root / "val"), "--val-detections", str(root / "val.json"), "--report", str(root / "r"), *extra]


def test_original_training_photos_beat_black_boxes(split, random_export, capsys):
    # One training face too small for the window (40 px / 2 = 20 px): trained around, counted.
    table = json.loads((split / "train.json").read_text())
    table["obama.jpg"].append({"box": [10, 10, 22, 22]})
    (split / "train.json").write_text(json.dumps(table))
    assert main(command(split, "--model", str(random_export), "--methods", "original", "black_box",
                        "generator_z0")) == 0
    report = json.loads((split / "r" / "downstream.json").read_text())
    rows = report["methods"]
    assert rows["original"]["ap50"] > 0.3 and rows["black_box"]["ap50"] < rows["original"]["ap50"]
    assert rows["original"]["ap50_vs_original"] == 1.0 and rows["original"]["ap"] <= rows["original"]["ap50"]
    train, val = report["train"], report["val"]
    assert (train["photos"], train["faces"], train["too_small_for_detector"], train["faces_used"]) == (4, 5, 1, 4)
    assert train["faces"] == train["faces_used"] + train["too_small_for_detector"] + train["ignored_by_dataset"]
    assert (val["photos"], val["faces"], val["faces_used"]) == (2, 2, 2)
    assert train["without_keypoints"] == 1 and rows["generator_z0"]["generated_without_keypoints"] == 1
    assert report["export"]["sha256"] == json.loads((random_export / "generator.json").read_text())["sha256"]
    assert report["detector"] == {"name": "dlib-hog", "window": 40, "C": 5.0, "upsample": 1, "epsilon": 0.01,
                                  "flips": True, "threshold": -0.5, "threads": 0, "min_face": 20.0}
    assert all(r["train_seconds"] > 0 for r in rows.values())
    assert "| black_box |" in (split / "r" / "downstream.md").read_text()
    with Image.open(split / "r" / "downstream.png") as chart:
        assert chart.width > 400
    assert "| original |" in capsys.readouterr().out


def test_bad_inputs_are_one_line_errors(split, tmp_path, capsys):
    empty = {name: [] for name in json.loads((split / "train.json").read_text())}
    (tmp_path / "none.json").write_text(json.dumps(empty))
    args = command(split, "--methods", "original")
    args[args.index(str(split / "train.json"))] = str(tmp_path / "none.json")
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "no face to learn from" in err and str(split / "train") in err and len(err.splitlines()) == 1

    assert main(command(split, "--methods", "sharpen")) == 1
    assert "unknown method" in capsys.readouterr().err
    assert main(command(split, "--methods", "generator_z0")) == 1
    assert "--model is needed" in capsys.readouterr().err

    (split / "val" / "obama2.jpg").unlink()  # its entry stays in val.json
    assert main(command(split, "--methods", "original")) == 1
    err = capsys.readouterr().err.strip()
    assert "obama2.jpg" in err and "listed in" in err and len(err.splitlines()) == 1


def wider(root, lines_train: list[str], lines_val: list[str]):
    for split, lines in (("train", lines_train), ("val", lines_val)):
        images = root / f"WIDER_{split}" / "images" / "0--Parade"
        images.mkdir(parents=True, exist_ok=True)
        (root / "wider_face_split").mkdir(exist_ok=True)
        (root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    return root


def gt_lines(names, extra=None):
    lines = []
    for name in names:
        x0, y0, x1, y1 = (int(v) for v in FACES[name][0]["box"])
        rows = [f"{x0} {y0} {x1 - x0} {y1 - y0} 0 0 0 0 0 0"] + (extra or {}).get(name, [])
        lines += [f"0--Parade/{name}", str(len(rows)), *rows]
    return lines


def test_wider_face_layout_and_its_ignore_rule(tmp_path, capsys):
    train = [n for n in sorted(FACES) if n not in VAL]
    extra = {train[0]: ["5 5 30 30 0 0 0 1 0 0", "50 5 30 30 0 0 0 0 2 0", "90 5 30 30 2 1 1 0 1 1"]}
    root = wider(tmp_path / "wider", gt_lines(train, extra) + ["0--Parade/empty.jpg", "0", "0 0 0 0 0 0 0 0 0 0"],
                 gt_lines(VAL))
    for name in FACES:
        split = "val" if name in VAL else "train"
        shutil.copy(DEMO / "photos" / name, root / f"WIDER_{split}" / "images" / "0--Parade" / name)
    Image.new("RGB", (64, 64)).save(root / "WIDER_train" / "images" / "0--Parade" / "empty.jpg")
    photos = read_wider(root, "train")
    assert [p.relative for p in photos][-1] == "0--Parade/empty.jpg" and len(photos[-1].boxes) == 0
    first = photos[0]
    assert first.boxes.shape == (4, 4) and first.boxes[1].tolist() == [5, 5, 35, 35]
    assert first.ignore.tolist() == [False, True, True, False]  # invalid, heavy occlusion; partial is kept
    assert first.keypoints is None
    # Keypoints come from a detections file where it has the same face.
    (tmp_path / "kp.json").write_text(json.dumps({first.relative: FACES[train[0]]}))
    merged = with_keypoints(read_wider(root, "train"), tmp_path / "kp.json")
    assert (merged[0].keypoints[0] >= 0).any() and (merged[0].keypoints[1:] < 0).all()

    assert main(["--wider", str(root), "--methods", "original", "black_box", "--report", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "downstream.json").read_text())
    assert report["train"]["ignored_by_dataset"] == 2 and report["train"]["photos"] == 5
    assert report["methods"]["original"]["ap50"] > report["methods"]["black_box"]["ap50"]
    capsys.readouterr()


@pytest.mark.parametrize("bad, message", [
    (["0--Parade/a.jpg", "x"], "expected the face count of 0--Parade/a.jpg"),
    (["0--Parade/a.jpg", "1", "1 2 3"], "expected 10 integers"),
    (["0--Parade/a.jpg", "2", "1 2 3 4 0 0 0 0 0 0"], "the file ends before its 2 face line(s)"),
    (["oops"], "expected a photo path"),
])
def test_a_malformed_wider_line_names_the_file_and_line(tmp_path, bad, message, capsys):
    root = wider(tmp_path / "w", bad, bad)
    Image.new("RGB", (8, 8)).save(root / "WIDER_train" / "images" / "0--Parade" / "a.jpg")
    with pytest.raises(DataError, match="wider_face_train_bbx_gt.txt:[0-9]+") as caught:
        read_wider(root, "train")
    assert message in str(caught.value)
    assert main(["--wider", str(root), "--methods", "original", "--report", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip()
    assert "wider_face_train_bbx_gt.txt:" in err and len(err.splitlines()) == 1


def test_a_missing_wider_photo_names_its_line(tmp_path):
    root = wider(tmp_path / "w", ["0--Parade/gone.jpg", "1", "1 2 3 4 0 0 0 0 0 0"], [])
    with pytest.raises(DataError, match=r"gone.jpg: missing_photo: listed at .*bbx_gt.txt:1"):
        read_wider(root, "train")


def test_average_precision_by_hand(split):
    """One face per photo: a perfect detection, and one found only after a higher-scored false one."""
    photos = photo_set(split / "val", split / "val.json")
    ignore = [np.zeros(1, dtype=bool), np.zeros(1, dtype=bool)]
    exact = [(p.boxes, np.array([1.0])) for p in photos]
    assert average_precision(photos, ignore, exact)["ap50"] == pytest.approx(1.0)
    far = np.array([[0.0, 0.0, 10.0, 10.0]])
    late = [(np.vstack([far, photos[0].boxes]), np.array([0.9, 0.1])), (photos[1].boxes, np.array([0.8]))]
    # Ranked: face (0.8), false (0.9 > 0.8: first), face (0.1): precision 0, 1/2, 2/3 at recalls 0, 0.5, 1.
    assert 0.6 < average_precision(photos, ignore, late)["ap50"] < 0.9
    # A detection on an ignored face is neither a hit nor a miss.
    ignored = [np.array([True]), np.zeros(1, dtype=bool)]
    assert average_precision(photos, ignored, exact)["ap50"] == pytest.approx(1.0)
    assert average_precision(photos, ignore, [(np.zeros((0, 4)), np.zeros(0))] * 2)["ap50"] == 0.0


def test_the_trainer_checks_its_options():
    with pytest.raises(ValueError, match="--detector-window >= 16"):
        DlibHogTrainer(window=8)
    assert DlibHogTrainer(window=48, upsample=2).min_face == 12


def test_the_demo_split_keeps_people_apart(tmp_path):
    assert write_split(tmp_path, variants=1) == {"train": 8, "val": 4}
    train, val = (photo_set(tmp_path / part, tmp_path / f"{part}.json") for part in ("train", "val"))
    people = {p.relative.split("_")[0].rstrip("0123456789") for p in val}
    assert people == {"grace", "obama"} and not any(p.relative.startswith("grace") for p in train)
    scaled = next(p for p in train if p.relative == "biden_1.jpg")
    with Image.open(scaled.path) as image:  # the boxes follow the photo's scale
        assert scaled.boxes[0][2] <= image.width and image.width < 410
