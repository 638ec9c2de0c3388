import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from safetensors.torch import load_file, save_file

from data.demo import HERE as DEMO
from gan import load_generator
from gan.anonymize import Anonymizer
from gan.anonymize import main as anonymize_main
from gan.checkpoint import ema_generator_from_checkpoint
from gan.export import ExportError, export
from gan.export import main as export_main
from gan.generator import Generator
from tests.datasets import face_batch


@pytest.fixture(scope="module")
def trained(trained_run):
    """The checkpoints of a finished tiny run: train.py exported its EMA generator at the end."""
    return trained_run / "ckpt"


def test_training_ends_with_an_export_equal_to_the_ema_generator(trained):
    model = load_generator(trained / "export")
    reference, meta = ema_generator_from_checkpoint(trained / "last.ckpt")
    condition, mask, keypoints = face_batch(3, 32)
    z = torch.randn(3, 32, 4, 4)
    expected = reference(condition, mask, keypoints, z, resolution=32, alpha=1.0)
    assert torch.equal(model(condition, mask, keypoints, z), expected)  # bit-exact
    description = json.loads((trained / "export" / "generator.json").read_text())
    assert description["images_seen"] == 96 and description["resolution"] == 32
    assert description["inputs"]["keypoints"]["names"][1] == "left_eye"
    assert description["training_config"]["model"]["base_width"] == 8


def test_export_command_from_a_checkpoint(trained, tmp_path):
    assert export_main(["--checkpoint", str(trained / "last.ckpt"), "--out", str(tmp_path / "e"), "--no-onnx"]) == 0
    assert not (tmp_path / "e" / "generator.onnx").exists()
    assert load_generator(tmp_path / "e").resolution == 32


@pytest.fixture(scope="module")
def random_export(tmp_path_factory):
    torch.manual_seed(0)
    return export(Generator(16, 32), tmp_path_factory.mktemp("random") / "export")


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_torch(random_export, batch):
    graph = onnx.load(str(random_export / "generator.onnx"))
    assert [i.name for i in graph.graph.input] == ["condition", "mask", "keypoints", "z"]
    assert not list(random_export.glob("*.data"))  # a single file
    session = onnxruntime.InferenceSession(str(random_export / "generator.onnx"), providers=["CPUExecutionProvider"])
    condition, mask, keypoints = face_batch(batch, 32)
    z = torch.randn(batch, 32, 4, 4)
    expected = load_generator(random_export)(condition, mask, keypoints, z)
    (got,) = session.run(None, {"condition": condition.numpy(), "mask": mask.numpy(),
                                "keypoints": keypoints.numpy(), "z": z.numpy()})
    assert np.abs(got - expected.numpy()).max() < 1e-4


def copy_export(source, target):
    target.mkdir()
    for name in ("generator.json", "generator.safetensors"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_tampered_exports_are_refused(random_export, tmp_path):
    bad = copy_export(random_export, tmp_path / "bytes")
    data = bytearray((bad / "generator.safetensors").read_bytes())
    data[-1] ^= 1
    (bad / "generator.safetensors").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="sha256 .* does not match generator.json"):
        load_generator(bad)

    old = copy_export(random_export, tmp_path / "version")
    meta = json.loads((old / "generator.json").read_text())
    meta["format_version"] = 99
    (old / "generator.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match="version 99"):
        load_generator(old)

    for name, change in (("extra", lambda s: {**s, "stowaway": torch.zeros(1)}),
                         ("missing", lambda s: {k: v for k, v in s.items() if not k.startswith("to_rgb.32")})):
        folder = copy_export(random_export, tmp_path / name)
        save_file(change(load_file(folder / "generator.safetensors")), folder / "generator.safetensors")
        meta = json.loads((folder / "generator.json").read_text())
        meta["sha256"] = __import__("hashlib").sha256((folder / "generator.safetensors").read_bytes()).hexdigest()
        (folder / "generator.json").write_text(json.dumps(meta))
        with pytest.raises(ExportError, match="unexpected \\['stowaway'\\]" if name == "extra" else "missing \\['to_rgb.32"):
            load_generator(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="generator.json: missing"):
        load_generator(tmp_path / "empty")


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


def test_format_1_exports_load_with_their_constants(random_export, tmp_path):
    """Format 1 exports predate the architecture's gain and eps fields: they were built with gain 1.0 and eps 1e-8."""
    folder = tmp_path / "v1"
    copy_export(random_export, folder)
    meta = json.loads((folder / "generator.json").read_text())
    meta["format_version"] = 1
    for key in ("to_rgb_gain", "pixel_norm_eps"):
        del meta["architecture"][key]
    (folder / "generator.json").write_text(json.dumps(meta))
    old, new = load_generator(folder), load_generator(random_export)
    assert old.generator.to_rgb_gain == 1.0 and new.generator.to_rgb_gain == pytest.approx(2**0.5)
    condition, mask, keypoints = face_batch(2, 32)
    z = torch.randn(2, 32, 4, 4)
    assert not torch.allclose(old(condition, mask, keypoints, z), new(condition, mask, keypoints, z))


def test_a_changed_onnx_file_is_refused(random_export, tmp_path):
    from gan.export import load_onnx_generator

    folder = copy_export(random_export, tmp_path / "e")
    onnx_bytes = bytearray((random_export / "generator.onnx").read_bytes())
    (folder / "generator.onnx").write_bytes(bytes(onnx_bytes))
    assert load_onnx_generator(folder).resolution == 32
    onnx_bytes[-1] ^= 1
    (folder / "generator.onnx").write_bytes(bytes(onnx_bytes))
    with pytest.raises(ExportError, match=r"generator.onnx: sha256 .* does not match generator.json"):
        load_onnx_generator(folder)


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
    assert "no such photo" in capsys.readouterr().err and not out.exists()
    (tmp_path / "det.json").write_text(json.dumps({"other.jpg": []}))
    assert anonymize_main(["--model", str(random_export), "--input", str(DEMO / "photos" / "obama.jpg"), "--output",
                           str(out), "--detections", str(tmp_path / "det.json")]) == 1
    assert "no entry for obama.jpg" in capsys.readouterr().err and not out.exists()


def test_re_exporting_gives_identical_bytes(random_export, tmp_path):
    torch.manual_seed(0)
    again = export(Generator(16, 32), tmp_path / "again")
    for name in ("generator.safetensors", "generator.onnx", "generator.json"):
        assert (again / name).read_bytes() == (random_export / name).read_bytes(), name
