import json

import numpy as np
import pytest
import torch
from PIL import Image

from data.crop import crop_face, crop_window
from data.demo import HERE as DEMO
from data.detections import keypoints_from_68
from data.prepare import main, prepare
from data.prepared import PreparedDataset
from data.record import DataError


def test_crop_window_is_square_expanded_and_inside():
    window = crop_window(np.array([100, 100, 140, 120]), 400, 300)
    assert (window[2] - window[0], window[3] - window[1]) == (68, 68)  # 40 * 1.7, squared on the long side
    assert window.tolist() == [86, 76, 154, 144]  # centred on the face
    shifted = crop_window(np.array([0, 0, 40, 40]), 400, 300)
    assert shifted.tolist() == [0, 0, 68, 68]  # shifted inside the photo, not padded
    big = crop_window(np.array([10, 10, 190, 90]), 200, 100)
    assert big[2] - big[0] == 306 and big[0] < 0 and big[1] < 0  # larger than the photo: centred and padded


def test_crop_face_maps_box_and_keypoints():
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[150, 250] = 255
    points = np.full((7, 2), -1.0)
    points[0] = [250.5, 150.5]
    points[1] = [10, 10]  # outside the crop: absent there
    crop, box, keypoints = crop_face(photo, np.array([220, 120, 280, 180]), points, np.array([200, 100, 328, 228]))
    assert crop.shape == (128, 128, 3) and crop[50, 50].max() == 255
    np.testing.assert_allclose(box, [20 / 128, 20 / 128, 80 / 128, 80 / 128])
    np.testing.assert_allclose(keypoints[0], [50.5 / 128, 50.5 / 128])
    assert (keypoints[1:] == -1).all()


def test_68_landmarks_to_7_keypoints():
    landmarks = np.zeros((68, 2))
    landmarks[30] = [50, 60]
    landmarks[36:42] = [[30, 40]] * 6  # image left: the subject's right eye
    landmarks[42:48] = [[70, 42]] * 6
    landmarks[0], landmarks[16] = [10, 50], [90, 52]
    points = keypoints_from_68(landmarks)
    assert points.tolist() == [[50, 60], [70, 42], [30, 40], [90, 52], [10, 50], [-1, -1], [-1, -1]]


def test_prepare_with_detections_file(tmp_path):
    manifest = prepare(DEMO / "photos", tmp_path / "out", DEMO / "annotations.json", progress=False)
    assert manifest["count"] == 6 and manifest["skipped_count"] == 0
    dataset = PreparedDataset(tmp_path / "out")
    record = dataset[0]  # astronaut.jpg: all 7 keypoints inside the photo; the shoulders fall outside the crop
    assert record.image.shape == (128, 128, 3)
    assert (record.keypoints[:5] >= 0).all() and (record.keypoints[:5] < 1).all() and (record.keypoints[5:] == -1).all()
    assert record.keypoints[1, 0] > record.keypoints[2, 0]  # subject's left eye on the image's right
    box_side = record.box[2] - record.box[0]
    assert box_side == pytest.approx(1 / 1.7, abs=0.02)


def test_prepare_lists_what_it_leaves_out(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((400, 400, 3), np.uint8)).save(photos / "small.png")
    Image.fromarray(np.zeros((400, 400, 3), np.uint8)).save(photos / "unlisted.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    detections = {"small.png": [{"box": [10, 10, 40, 40]}, {"box": [100, 100, 300, 300]}], "broken.jpg": []}
    (tmp_path / "det.json").write_text(json.dumps(detections))
    with pytest.warns(UserWarning, match="left out 3"):
        manifest = prepare(photos, tmp_path / "out", tmp_path / "det.json", progress=False)
    assert manifest["count"] == 1
    assert manifest["skipped_by_problem"] == {"corrupt_image": 1, "too_small": 1, "no_detections_entry": 1}
    assert (PreparedDataset(tmp_path / "out")[0].keypoints == -1).all()  # no keypoints given: all absent


def test_bad_detections_file_names_photo_and_face(tmp_path, capsys):
    (tmp_path / "det.json").write_text(json.dumps({"astronaut.jpg": [{"box": [5, 5, 1, 9]}]}))
    assert main(["--images", str(DEMO / "photos"), "--out", str(tmp_path / "o"), "--detections",
                 str(tmp_path / "det.json")]) == 1
    assert "det.json [astronaut.jpg, face 0]" in capsys.readouterr().err


def test_offline_without_weights_names_the_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    assert main(["--images", str(DEMO / "photos"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "s3fd-619a316812.pth") in err
    assert "2DFAN4-11f355bf06.pth.tar" in err and "--detections" in err


def _offline(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("no network")


def test_face_alignment_path_with_local_weights(tmp_path, monkeypatch):
    """The real face-alignment code path, with weights placed in the cache by hand (random, so no face is found)."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    detector = s3fd().state_dict()
    for name, value in detector.items():  # confident "background" everywhere: the detector finds no face
        if "conf" in name:
            value.zero_()
            if name.endswith("bias"):
                value[:-1], value[-1] = 20.0, -20.0
    torch.save(detector, checkpoints / "s3fd-619a316812.pth")
    torch.save(FAN(4).state_dict(), checkpoints / "2DFAN4-11f355bf06.pth.tar")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(DEMO / "photos" / "astronaut.jpg").resize((96, 96)).save(photos / "a.png")
    with pytest.warns(UserWarning, match="no_face"):
        manifest = prepare(photos, tmp_path / "out", device="cpu", progress=False)
    assert manifest["count"] == 0 and manifest["skipped"][0]["problem"] == "no_face"


def test_detections_accept_null_for_absent_keypoints(tmp_path):
    from data.detections import load_detections

    points = [[10, 12], None, [None, None], [-1, -1], [30.5, 40], [1, 2], [3, 4]]
    (tmp_path / "det.json").write_text(json.dumps({"a.jpg": [{"box": [0, 0, 50, 60], "keypoints": points},
                                                             {"box": [5, 5, 20, 20], "keypoints": None}]}))
    faces = load_detections(tmp_path / "det.json")["a.jpg"]
    assert faces[0].keypoints.tolist() == [[10, 12], [-1, -1], [-1, -1], [-1, -1], [30.5, 40], [1, 2], [3, 4]]
    assert (faces[1].keypoints == -1).all() and faces[1].box.tolist() == [5, 5, 20, 20]
    bad_entries = {"keypoint 0 must be": [["x", 1]] + [[1, 1]] * 6, "list of 7": [[1, 2]] * 6}
    for message, keypoints in bad_entries.items():
        entry = {"b.jpg": [{"box": [0, 0, 5, 5]}, {"box": [0, 0, 5, 5], "keypoints": keypoints}]}
        (tmp_path / "bad.json").write_text(json.dumps(entry))
        with pytest.raises(DataError, match=rf"bad.json \[b.jpg, face 1\].*{message}"):
            load_detections(tmp_path / "bad.json")
