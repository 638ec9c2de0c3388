"""The privacy/utility report, with dlib's real models on the demo's real photos."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data.demo import HERE as DEMO
from data.face_analysis import FaceAnalyzer, box_iou, landmark_error
from data.obscure import black_box, blur, pixelate
from data.prepared import PreparedDataset, write_prepared
from data.record import make_record
from gan.privacy.cli import main
from gan.privacy.measure import Tally, measure

# The demo set's first six faces are one crop of each photo, in this order.
PEOPLE = ["astronaut", "biden", "grace_hopper", "obama", "obama", "obama"]


@pytest.fixture(scope="module")
def analyzer():
    return FaceAnalyzer()


@pytest.fixture(scope="module")
def faces(demo):
    dataset = PreparedDataset(demo)
    return [(dataset[i].image, dataset[i].box * 128) for i in range(12)]


def pixels(box):
    x0, y0, x1, y1 = box
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def paste(target: np.ndarray, box, source: np.ndarray, source_box) -> np.ndarray:
    """``target`` with the face inside ``source_box`` of ``source`` resized into ``box``."""
    x0, y0, x1, y1 = pixels(box)
    sx0, sy0, sx1, sy1 = pixels(source_box)
    face = Image.fromarray(np.ascontiguousarray(source[sy0:sy1, sx0:sx1])).resize((x1 - x0, y1 - y0), Image.BICUBIC)
    out = target.copy()
    out[y0:y1, x0:x1] = np.asarray(face)
    return out


def test_each_metric_tells_the_cases_apart(analyzer, faces):
    totals: dict[str, Tally] = {}
    for i, (image, box) in enumerate(faces):
        other = next(j for j in range(6) if PEOPLE[j] != PEOPLE[i % 6])  # someone else's face: positive control
        methods = {"blur": blur(image, pixels(box)), "black_box": black_box(image, pixels(box)),
                   "someone_else": paste(image, box, faces[other][0], faces[other][1])}
        for name, tally in measure(analyzer, image, methods, [box]).items():
            totals.setdefault(name, Tally())
            totals[name] += tally
    original, summary = totals["original"], {name: t.summary(totals["original"]) for name, t in totals.items()}
    assert original.faces == 12 and summary["original"]["identity_distance"] == 0.0
    assert summary["original"]["reid_rate"] == 1.0 and summary["original"]["detection_rate"] >= 10 / 12
    assert summary["black_box"]["detection_rate"] == 0.0
    assert summary["blur"]["detection_rate"] < summary["original"]["detection_rate"]
    assert summary["someone_else"]["reid_rate"] == 0.0  # a real face, but not this person
    assert summary["someone_else"]["identity_distance"] > 0.6
    assert summary["someone_else"]["detection_rate_vs_original"] >= 0.75  # ... and still a detectable face
    assert summary["someone_else"]["landmark_error"] < 0.5


def test_same_person_in_another_photo_is_re_identified(analyzer, faces):
    """obama.jpg's face pasted into obama2.jpg's box: another image, the same person."""
    (target, box), (source, source_box) = faces[4], faces[3]
    tally = measure(analyzer, target, {"same_person": paste(target, box, source, source_box)}, [box])["same_person"]
    assert tally.faces == 1 and tally.reidentified == 1


def test_small_faces_are_counted_not_measured(analyzer, faces):
    image, _ = faces[0]
    tallies = measure(analyzer, image, {"black_box": image}, [(50, 50, 80, 70)])  # 20 px high
    assert tallies["original"].too_small == 1 and tallies["original"].faces == 0
    assert tallies["black_box"].too_small == 1 and tallies["black_box"].summary()["reid_rate"] is None


def test_helpers_by_hand():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    marks = np.array([[0, 0], [2, 0], [10, 0], [12, 0], [6, 5]], dtype=float)
    assert landmark_error(marks, marks + [0, 1]) == pytest.approx(1 / 10)  # eye centres 1 and 11 apart by 10
    tally = Tally(faces=3, too_small=1, distance_sum=1.5, reidentified=1, detected=2, landmark_error_sum=0.2,
                  landmark_faces=2)
    assert Tally.from_tensor(tally.as_tensor()) == tally
    assert tally.summary(Tally(detected=4))["detection_rate_vs_original"] == 0.5


def test_classic_methods_change_only_the_box():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    box = (16, 8, 48, 40)
    for out in (blur(image, box), pixelate(image, box), black_box(image, box)):
        outside = np.ones(image.shape[:2], bool)
        outside[8:40, 16:48] = False
        assert np.array_equal(out[outside], image[outside]) and not np.array_equal(out, image)
    mosaic = pixelate(image, box)[8:40, 16:48]
    assert len(np.unique(mosaic.reshape(-1, 3), axis=0)) <= 64 and np.array_equal(mosaic[0, 0], mosaic[3, 3])
    assert (black_box(image, box)[8:40, 16:48] == 0).all()


def test_crop_report_end_to_end(trained_run, demo, tmp_path, capsys):
    # Two demo faces and one whose box is too small for the detector.
    dataset = PreparedDataset(demo)
    records = [dataset[0], dataset[1], make_record(dataset[2].image, [0.45, 0.45, 0.6, 0.6], dataset[2].keypoints, 2,
                                                   "x")]
    data = tmp_path / "data"
    write_prepared(data, records, source="test", capacity=3)
    code = main(["--model", str(trained_run / "ckpt" / "export"), "--data", str(data), "--report", str(tmp_path / "r"),
                 "--workers", "2", "--num", "10"])
    assert code == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    export = json.loads((trained_run / "ckpt" / "export" / "generator.json").read_text())
    assert report["export"]["sha256"] == export["sha256"] and report["export"]["images_seen"] == 96
    assert report["faces"] == 3 and report["too_small"] == 1 and report["too_small_faces"] == [2]
    methods = report["methods"]
    assert list(methods) == ["original", "blur", "pixelate", "black_box", "generator_z0", "generator_random"]
    assert methods["original"]["faces"] == 2 and methods["original"]["identity_distance"] == 0.0
    assert methods["original"]["reid_rate"] == 1.0 and methods["black_box"]["detection_rate"] == 0.0
    assert methods["original"]["fid"] == pytest.approx(0.0, abs=1e-3) and methods["black_box"]["fid"] > 1.0
    assert all(m["too_small"] == 1 for m in methods.values())
    assert "IoU >= 0.5" in report["rules"]["detection"]
    assert "| generator_z0 |" in (tmp_path / "r" / "report.md").read_text()
    for picture in ("tradeoff.png", "contact.png"):
        with Image.open(tmp_path / "r" / picture) as image:
            assert image.width > 300
    assert "| black_box | 0.0 %" in capsys.readouterr().out


def test_photo_report_with_a_photo_left_out(trained_run, tmp_path):
    photos = tmp_path / "photos"
    shutil.copytree(DEMO / "photos", photos)
    shutil.copy(DEMO / "photos" / "biden.jpg", photos / "unlisted.jpg")
    out = tmp_path / "r"
    assert main(["--model", str(trained_run / "ckpt" / "export"), "--photos", str(photos),
                 "--detections", str(DEMO / "annotations.json"), "--report", str(out), "--workers", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "photos" and report["photos"] == 6 and report["faces"] == 6
    assert report["photos_without_entry"] == ["unlisted.jpg"] and report["entries_without_photo"] == []
    assert report["methods"]["original"]["detection_rate"] == 1.0
    assert report["methods"]["black_box"]["detection_rate"] == 0.0
    assert report["rules"]["realism"] == "not measured on whole photos"
    # Rank-1 over six photos of four people: the original's nearest face is itself; a black box's is anyone's.
    assert report["methods"]["original"]["rank1_rate"] == 1.0 and report["methods"]["black_box"]["rank1_rate"] < 1.0
    assert "| rank-1 identified |" in (out / "report.md").read_text()


def test_bad_input_is_refused_with_a_clear_line(trained_run, demo, tmp_path, capsys):
    export = str(trained_run / "ckpt" / "export")
    assert main(["--model", str(tmp_path), "--data", str(demo), "--report", str(tmp_path / "r")]) == 1
    assert "generator.json: missing" in capsys.readouterr().err
    assert main(["--model", export, "--data", str(tmp_path), "--report", str(tmp_path / "r")]) == 1
    assert "expected manifest.json" in capsys.readouterr().err
    assert main(["--model", export, "--data", str(demo), "--num", "0", "--report", str(tmp_path / "r")]) == 1
    assert "--num must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--model", export, "--photos", str(tmp_path)])  # --photos needs --detections
    assert not (tmp_path / "r").exists()


def test_missing_dlib_models_name_the_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'safefakes\[privacy\]'"):
        FaceAnalyzer()


def test_training_logs_privacy_and_utility(trained_run):
    events = EventAccumulator(str(trained_run / "run" / "logs"), size_guidance={"scalars": 0}).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"metrics/privacy/reid_rate", "metrics/privacy/identity_distance", "metrics/utility/detection_rate",
            "metrics/utility/detection_rate_vs_original"} <= tags
    # min_resolution 16: measured from the 16 px phases on (40, 48, 80, 96 images), never at 8 px (16).
    assert [e.step for e in events.Scalars("metrics/privacy/reid_rate")] == [40, 48, 80, 96]
    assert all(0 <= e.value <= 1 for e in events.Scalars("metrics/utility/detection_rate"))
    assert torch.isfinite(torch.tensor([e.value for e in events.Scalars("metrics/privacy/identity_distance")])).all()


def test_the_report_measures_exactly_what_the_anonymizer_writes(random_export, demo):
    """One paste path: the report's generator rows are the anonymizer's output, byte for byte, for crops and
    photos, and the training callback measures through the same anonymizer."""
    from data.detections import load_detections
    from data.record import collate
    from gan.anonymize import Anonymizer
    from gan.export import load_generator
    from gan.privacy.methods import anonymize_crops, anonymize_photos, anonymizers

    generator = load_generator(random_export)
    methods = anonymizers(generator, seed=3, batch_size=5)
    dataset = PreparedDataset(demo)
    batch = collate([dataset[i] for i in range(6)])
    crops = anonymize_crops(batch, methods)
    images, boxes, points = batch.as_photos()
    for name, seed in (("generator_z0", None), ("generator_random", 3)):
        # The same batches of faces as the report's (a batch of 5 may round differently from a batch of 1).
        anonymizer = Anonymizer.for_generator(generator, seed=seed, batch_size=5)
        written = anonymizer.many(images, boxes, points, [int(i) for i in batch.index])
        for i, (expected, _) in enumerate(written):
            assert np.array_equal(crops[name][i], expected), (name, i)
    photo = np.asarray(Image.open(DEMO / "photos" / "biden.jpg").convert("RGB"))
    faces = load_detections(DEMO / "annotations.json")["biden.jpg"]
    face_boxes, face_points = [f.box for f in faces], [f.keypoints for f in faces]
    (row,) = anonymize_photos([photo], [face_boxes], [face_points], methods, [0])
    expected, _ = Anonymizer.for_generator(generator)(photo, face_boxes, face_points)
    assert np.array_equal(row["generator_z0"], expected)
