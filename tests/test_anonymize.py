"""gan.anonymize: every face replaced, nothing outside the boxes changed, one paste path, the command line."""

import json

import numpy as np
import pytest

from data.demo import HERE as DEMO
from gan.anonymize import Anonymizer, paste_face
from gan.anonymize import main as anonymize_main


def photo_and_faces():
    from PIL import Image

    photo = np.asarray(Image.open(DEMO / "photos" / "obama.jpg").convert("RGB"))
    annotations = json.loads((DEMO / "annotations.json").read_text())["obama.jpg"][0]
    boxes = [annotations["box"], [10, 20, 40, 55], [440, 400, 520, 500]]  # a second face, one past the edge
    keypoints = [annotations["keypoints"], [[-1, -1]] * 7, [[-1, -1]] * 7]
    return photo, np.array(boxes), np.array(keypoints)


def changed_only_inside(before, after, boxes):
    inside = np.zeros(before.shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        inside[max(int(np.floor(y0)), 0) : int(np.ceil(y1)), max(int(np.floor(x0)), 0) : int(np.ceil(x1))] = True
    assert np.array_equal(before[~inside], after[~inside])
    for x0, y0, x1, y1 in boxes:
        region = (slice(max(int(y0), 0), int(np.ceil(y1))), slice(max(int(x0), 0), int(np.ceil(x1))))
        assert not np.array_equal(before[region], after[region])


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_anonymizer_replaces_every_face_and_nothing_else(random_export, backend):
    photo, boxes, keypoints = photo_and_faces()
    anonymizer = Anonymizer.from_export(random_export, backend, batch_size=2)
    out, report = anonymizer(photo, boxes, keypoints)
    assert out.shape == photo.shape and out.dtype == np.uint8
    changed_only_inside(photo, out, boxes)
    assert (report.generated, report.generated_without_keypoints, report.blurred) == (3, 2, 0)
    again, _ = anonymizer(photo, boxes, keypoints)
    assert np.array_equal(out, again)  # z = 0: deterministic


def test_anonymizer_blur_option_and_no_keypoints(random_export):
    photo, boxes, _ = photo_and_faces()
    out, report = Anonymizer.from_export(random_export, blur_below=50)(photo, boxes)
    changed_only_inside(photo, out, boxes)
    assert (report.generated, report.generated_without_keypoints, report.blurred) == (2, 2, 1)


def test_anonymize_command(random_export, tmp_path, capsys):
    detections = json.loads((DEMO / "annotations.json").read_text())
    (tmp_path / "det.json").write_text(json.dumps(detections))
    photos = [str(DEMO / "photos" / name) for name in ("obama.jpg", "biden.jpg")]
    code = anonymize_main(["--model", str(random_export), "--input", *photos, "--output", str(tmp_path / "out"),
                           "--detections", str(tmp_path / "det.json"), "--backend", "onnx", "--seed", "3"])
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["generated"] == 2 and report["images"]["biden.jpg"]["faces"] == 1
    assert (tmp_path / "out" / "obama.jpg").is_file()
    assert anonymize_main(["--model", str(tmp_path / "nothing"), "--input", *photos, "--output", str(tmp_path)]) == 1
    assert "generator.json: missing" in capsys.readouterr().err


def test_anonymized_photos_keep_their_format_and_quality_and_lose_exif(random_export, tmp_path):
    from PIL import Image

    detections = json.loads((DEMO / "annotations.json").read_text())
    detections["obama.png"] = detections["obama.jpg"]
    (tmp_path / "det.json").write_text(json.dumps(detections))
    with Image.open(DEMO / "photos" / "obama.jpg") as original:
        exif = original.getexif()
        exif[0x010F] = "CameraMaker"  # a camera's EXIF entry, to be dropped
        original.save(tmp_path / "obama.jpg", quality=95, exif=exif, subsampling=2)
        original.save(tmp_path / "obama.png")
    for name in ("obama.jpg", "obama.png"):
        assert anonymize_main(["--model", str(random_export), "--input", str(tmp_path / name), "--output",
                               str(tmp_path / "out"), "--detections", str(tmp_path / "det.json")]) == 0
    box = detections["obama.jpg"][0]["box"]
    outside = np.ones(np.asarray(Image.open(tmp_path / "obama.png")).shape[:2], bool)
    outside[int(box[1]) : int(np.ceil(box[3])), int(box[0]) : int(np.ceil(box[2]))] = False
    with Image.open(tmp_path / "out" / "obama.png") as png, Image.open(tmp_path / "obama.png") as source:
        assert png.format == "PNG" and np.array_equal(np.asarray(png)[outside], np.asarray(source)[outside])
    with Image.open(tmp_path / "out" / "obama.jpg") as jpg, Image.open(tmp_path / "obama.jpg") as source:
        from PIL import JpegImagePlugin

        assert jpg.format == "JPEG" and JpegImagePlugin.get_sampling(jpg) == 2 and 0x010F not in jpg.getexif()
        moved = np.abs(np.asarray(jpg, dtype=float) - np.asarray(source, dtype=float))[outside].mean()
        source.save(tmp_path / "q75.jpg")  # Pillow's default quality, for comparison
        with Image.open(tmp_path / "q75.jpg") as q75:
            default = np.abs(np.asarray(q75, dtype=float) - np.asarray(source, dtype=float))[outside].mean()
    assert moved < 0.6 and moved < default / 2  # outside the box the photo stays as it was, up to re-encoding


def test_anonymize_checks_inputs_first_and_leaves_nothing_behind(random_export, tmp_path, capsys):
    out = tmp_path / "out"
    assert anonymize_main(["--model", str(random_export), "--input", str(tmp_path / "missing.jpg"),
                           "--output", str(out)]) == 1
    assert "missing.jpg: missing_input: no such file or folder" in capsys.readouterr().err and not out.exists()
    (tmp_path / "det.json").write_text(json.dumps({"other.jpg": []}))
    assert anonymize_main(["--model", str(random_export), "--input", str(DEMO / "photos" / "obama.jpg"), "--output",
                           str(out), "--detections", str(tmp_path / "det.json")]) == 1
    assert "no entry for obama.jpg" in capsys.readouterr().err and not out.exists()




def test_paste_face_writes_the_box_only():
    photo = np.full((40, 50, 3), 7, np.uint8)
    face = np.full((8, 8, 3), 200, np.uint8)
    out = photo.copy()
    paste_face(out, face, window=(5, 2, 29, 26), pixels=(10, 6, 22, 20))
    inside = np.zeros(photo.shape[:2], bool)
    inside[6:20, 10:22] = True
    assert (out[inside] == 200).all() and np.array_equal(out[~inside], photo[~inside])


def test_faces_of_many_photos_in_one_batch_equal_one_photo_at_a_time(random_export):
    """Each face's latent comes from (seed, photo key, face index): batching does not change a pixel."""
    photo, boxes, keypoints = photo_and_faces()
    second = np.ascontiguousarray(photo[::-1])
    together = Anonymizer.from_export(random_export, seed=5, batch_size=16).many(
        [photo, second], [boxes, boxes[:1]], [keypoints, keypoints[:1]], keys=[10, 11])
    alone = Anonymizer.from_export(random_export, seed=5, batch_size=1)

    def close(a, b):  # a batched convolution may sum in another order: a pixel may round to the next uint8 level
        return np.abs(a.astype(int) - b.astype(int)).max() <= 1

    assert close(together[0][0], alone(photo, boxes, keypoints, key=10)[0])
    assert close(together[1][0], alone(second, boxes[:1], keypoints[:1], key=11)[0])
    assert not close(together[0][0], alone(photo, boxes, keypoints, key=11)[0])  # the key seeds the latents


def test_the_anonymizer_places_boxes_by_the_rule_the_export_records(random_export, tmp_path):
    """The box rule is the one the generator was trained with (the export's conditioning.box_rounding)."""
    from gan.export import export, load_generator

    outward = export(load_generator(random_export).generator, tmp_path / "outward", "outward", onnx=False)
    floor, ceil = Anonymizer.from_export(random_export), Anonymizer.from_export(outward)
    assert (floor.box_rounding, ceil.box_rounding) == ("floor", "outward")
    photo, boxes, keypoints = photo_and_faces()
    assert not np.array_equal(floor(photo, boxes, keypoints)[0], ceil(photo, boxes, keypoints)[0])
    with pytest.raises(ValueError, match="box rounding must be 'outward' or 'floor'"):
        Anonymizer(lambda *a: a[0], 32, (32, 4, 4), "nearest")
