import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from safetensors.torch import load_file, save_file

from gan import load_generator
from gan.checkpoint import ema_generator_from_checkpoint
from gan.export import ExportError, export
from gan.export import main as export_main
from gan.generator import Generator, GeneratorConfig
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
    assert description["training_config"]["model"]["generator"]["base_width"] == 8


def test_export_command_from_a_checkpoint(trained, tmp_path):
    assert export_main(["--checkpoint", str(trained / "last.ckpt"), "--out", str(tmp_path / "e"), "--no-onnx"]) == 0
    assert not (tmp_path / "e" / "generator.onnx").exists()
    assert load_generator(tmp_path / "e").resolution == 32


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
        with pytest.raises(ExportError,
                           match="unexpected \\['stowaway'\\]" if name == "extra" else "missing \\['to_rgb.32"):
            load_generator(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="generator.json: missing"):
        load_generator(tmp_path / "empty")


def test_format_1_exports_load_with_their_constants(random_export, tmp_path):
    """Format 1 exports predate the architecture's gain and eps fields: they were built with gain 1.0 and eps 1e-8."""
    folder = tmp_path / "v1"
    copy_export(random_export, folder)
    meta = json.loads((folder / "generator.json").read_text())
    arch = meta["architecture"]  # format 1's layout: flat, without the gain and eps, and no conditioning entry
    meta["format_version"] = 1
    meta["architecture"] = {"class": arch["class"], "max_resolution": arch["max_resolution"],
                            "base_width": arch["generator"]["base_width"],
                            "latent_channels": arch["generator"]["latent_channels"]}
    del meta["conditioning"]
    (folder / "generator.json").write_text(json.dumps(meta))
    old, new = load_generator(folder), load_generator(random_export)
    assert old.generator.config.to_rgb_gain == 1.0 and new.generator.config.to_rgb_gain == pytest.approx(2**0.5)
    assert old.meta["upgraded_from"] == 1 and old.meta["conditioning"]["box_rounding"] == "floor"
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


def test_re_exporting_gives_identical_bytes(random_export, tmp_path):
    torch.manual_seed(0)
    again = export(Generator(GeneratorConfig(16), 32), tmp_path / "again", "floor")
    for name in ("generator.safetensors", "generator.onnx", "generator.json"):
        assert (again / name).read_bytes() == (random_export / name).read_bytes(), name
