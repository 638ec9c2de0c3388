"""``python -m gan.export --format deepprivacy``: a checkpoint in DeepPrivacy's own layout, checked against the
reference forward pass written from DeepPrivacy's code and by importing it back."""

import math

import pytest
import torch

from gan import load_generator
from gan.checkpoint import ema_generator_from_checkpoint
from gan.export import main as export_main
from gan.export_deepprivacy import DeepPrivacyExportError, deepprivacy_state, export_deepprivacy
from gan.generator import Generator, GeneratorConfig
from gan.import_deepprivacy import import_checkpoint
from tests.datasets import face_batch
from tests.test_import_deepprivacy import current_generator, deepprivacy_current_forward, flatten, inputs


def randomized(generator: Generator, seed: int) -> Generator:
    """Non-zero biases too, so a bias that lands in the wrong place shows."""
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in generator.parameters():
            p.copy_(torch.randn(p.shape, generator=rng) * (0.1 if p.ndim == 1 else 1.0))
    return generator.eval()


def read(folder):
    name = (folder / "checkpoints" / "latest_checkpoint").read_text().strip()
    return folder / "checkpoints" / name, torch.load(folder / "checkpoints" / name, weights_only=True)


def test_the_file_computes_the_generator_in_deepprivacys_forward(tmp_path):
    """A gain-1 to_rgb (an older recipe) is rescaled to DeepPrivacy's sqrt(2); inside the box DeepPrivacy's forward
    gives this generator's output."""
    ours = randomized(Generator(GeneratorConfig(32, to_rgb_gain=1.0, pixel_norm_eps=1e-7), 128), 0)
    written = export_deepprivacy(ours, tmp_path / "dp", "floor", 1234, any_geometry=True)
    path, checkpoint = read(tmp_path / "dp")
    assert path.name == "step_1234.ckpt" and checkpoint["global_step"] == 1234 and written["notes"] == []
    assert set(checkpoint["running_average_generator"]) == set(flatten(current_generator(32)))
    image, mask, keypoints, z = inputs()
    with torch.no_grad():
        expected = ours(image, mask, keypoints, z, resolution=128, alpha=1.0)
        theirs = deepprivacy_current_forward(checkpoint["running_average_generator"], image, 1 - mask,
                                             keypoints.flatten(1), z)
    inside = mask.bool().expand_as(expected)
    # float32 sums over the same terms in another order (and the gain folded into the weights): 1e-4 on outputs of
    # magnitude ~1 is far below a grey level (1/127.5) and far above float32 rounding.
    torch.testing.assert_close(theirs[inside], expected[inside], rtol=1e-4, atol=1e-4)
    assert written["left_out"] and all(k.startswith(("to_rgb.", "from_rgb.")) for k in written["left_out"])


def test_export_then_import_gives_the_same_generator(tmp_path):
    ours = randomized(Generator(GeneratorConfig(16, pixel_norm_eps=1e-7), 32), 1)
    export_deepprivacy(ours, tmp_path / "dp", "floor", 96, any_geometry=True)
    path, _ = read(tmp_path / "dp")
    summary = import_checkpoint(path, tmp_path / "back", onnx=False)
    assert summary["format"] == "current" and summary["images_seen"] == 96 and summary["base_width"] == 16
    back = load_generator(tmp_path / "back")
    condition, mask, keypoints = face_batch(3, 32)
    z = torch.randn(3, 32, 4, 4)
    with torch.no_grad():
        expected = ours(condition, mask, keypoints, z, resolution=32, alpha=1.0)
    assert torch.equal(back(condition, mask, keypoints, z), expected)  # the same tensors, the same arithmetic


def test_paper_geometry_matches_deepprivacy_v1_tensor_for_tensor():
    """c = 512 at 128 px: every tensor DeepPrivacyV1 builds, in its shape, and nothing else."""
    state, left_out = deepprivacy_state(Generator(GeneratorConfig(512), 128))
    shapes = flatten(current_generator(512))
    assert {k: tuple(v.shape) for k, v in state.items()} == shapes
    assert sum(math.prod(s) for s in shapes.values()) == pytest.approx(46.92e6, rel=2e-3)


def test_the_command_refuses_a_geometry_deepprivacy_cannot_build(trained_run, tmp_path, capsys):
    ckpt = trained_run / "ckpt" / "last.ckpt"
    assert export_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "no"), "--format", "deepprivacy"]) == 1
    err = capsys.readouterr().err
    assert "c = 512 at 128 px" in err and "c = 8 at 32 px" in err and not (tmp_path / "no").exists()
    with pytest.raises(DeepPrivacyExportError):
        export_deepprivacy(Generator(GeneratorConfig(8), 32), tmp_path / "api", "floor", 0)


def test_the_command_from_a_checkpoint_and_from_an_export(trained_run, tmp_path, capsys):
    ckpt = trained_run / "ckpt" / "last.ckpt"
    generator, meta = ema_generator_from_checkpoint(ckpt)
    for source, out in ((ckpt, tmp_path / "from_ckpt"), (trained_run / "ckpt" / "export", tmp_path / "from_export")):
        assert export_main(["--checkpoint", str(source), "--out", str(out), "--format", "deepprivacy",
                            "--any-geometry"]) == 0
        printed = capsys.readouterr().out
        assert "python anonymize.py -c configs/fdf/deep_privacy_v1.py" in printed
        assert "PixelNorm eps is 1e-07" in printed  # the demo trains with the paper's 1e-8
        path, checkpoint = read(out)
        assert checkpoint["global_step"] == meta["images_seen"]
    _, a = read(tmp_path / "from_ckpt")
    _, b = read(tmp_path / "from_export")
    for key, value in a["running_average_generator"].items():
        assert torch.equal(value, b["running_average_generator"][key]), key
