"""Identity models (data.identity) and the rank-1 identification rate of the privacy report."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from data.demo import HERE as DEMO
from data.face_analysis import FaceAnalyzer
from data.identity import ARCFACE_TEMPLATE, IdentityError, load_onnx_identity, parse_identity
from gan.privacy.cli import main
from gan.privacy.measure import rank1_rates

FACES = json.loads((DEMO / "annotations.json").read_text())


def embedding_network(path, size: int = 112, dims: int = 32) -> None:
    """A small face-embedding network, built and saved here: 8x8 patches (conv stride 8) -> ReLU -> global average
    -> a linear map to ``dims``. Random weights: it tells faces apart by colour and texture, enough for a test."""
    rng = np.random.default_rng(0)
    conv = numpy_helper.from_array(rng.normal(0, 0.1, (16, 3, 8, 8)).astype(np.float32), "conv")
    dense = numpy_helper.from_array(rng.normal(0, 0.5, (16, dims)).astype(np.float32), "dense")
    nodes = [helper.make_node("Conv", ["input", "conv"], ["c"], strides=[8, 8]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "dense"], ["embedding"])]
    graph = helper.make_graph(nodes, "embed", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                               [1, 3, size, size])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, dims])],
                              [conv, dense])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    folder = tmp_path_factory.mktemp("identity")
    embedding_network(folder / "embed.onnx")
    (folder / "embed.json").write_text(json.dumps({"threshold": 0.3, "alignment": "arcface"}))
    return folder / "embed.onnx"


def test_rank1_counts_the_nearest_original():
    originals = [np.array([0.0, 0.0]), np.array([10.0, 0.0]), np.array([0.0, 10.0])]
    found = {"original": originals,
             "kept": [o + 0.5 for o in originals],  # each nearest its own source
             "swapped": [originals[1], originals[0], originals[2] + 0.1]}  # two land on each other's source
    rates = rank1_rates(found)
    assert rates == {"original": 1.0, "kept": 1.0, "swapped": pytest.approx(1 / 3)}
    assert rank1_rates({"original": [], "x": []}) == {"original": None, "x": None}


def test_the_arcface_crop_puts_the_eyes_on_the_template(network):
    """Landmarks placed exactly where a template crop has them: the crop is that region, resampled."""
    identity = load_onnx_identity(network)
    image = np.zeros((300, 300, 3), dtype=np.uint8)
    image[115:126, 95:106] = 255  # a white patch on the image-left eye, centred at (100, 120)
    landmarks = np.array([[95, 120], [105, 120], [175, 120], [185, 120], [140, 170]])  # dlib: eye corners, nose
    crop = identity.crop(image, (60, 60, 220, 240), landmarks)
    assert crop.shape == (112, 112, 3)
    ex, ey = ARCFACE_TEMPLATE[0]
    assert crop[int(ey), int(ex)].min() > 200 and crop[int(ey), int(ARCFACE_TEMPLATE[1][0])].max() < 50
    assert identity.embed(image, (60, 60, 220, 240), landmarks).shape == (32,)
    assert np.linalg.norm(identity.embed(image, (60, 60, 220, 240), landmarks)) == pytest.approx(1.0)


def test_photo_report_with_an_onnx_identity_model(trained_run, network, tmp_path):
    out = tmp_path / "r"
    assert main(["--model", str(trained_run / "ckpt" / "export"), "--photos", str(DEMO / "photos"), "--detections",
                 str(DEMO / "annotations.json"), "--report", str(out), "--workers", "1",
                 "--identity", f"onnx:{network}"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["identity"] == "onnx:embed.onnx"
    assert "0.3 (the network's same-person threshold" in report["rules"]["re_identification"]
    methods = report["methods"]
    assert methods["original"]["rank1_rate"] == 1.0 and methods["original"]["reid_rate"] == 1.0
    assert all(0.0 <= m["rank1_rate"] <= 1.0 for m in methods.values())
    assert "| rank-1 identified |" in (out / "report.md").read_text()


@pytest.mark.parametrize("options, message", [
    (None, "missing; it holds the network's options"),
    ({"alignment": "box"}, "needs 'threshold'"),
    ({"threshold": 1, "colour": "RGB"}, "unknown: ['colour']"),
    ({"threshold": 1, "alignment": "mtcnn"}, "alignment must be 'arcface' or 'box'"),
    ({"threshold": -1}, "threshold and std must be > 0"),
])
def test_bad_identity_options_name_the_file(tmp_path, options, message, capsys):
    embedding_network(tmp_path / "net.onnx")
    if options is not None:
        (tmp_path / "net.json").write_text(json.dumps(options))
    with pytest.raises(IdentityError, match="net.json"):
        load_onnx_identity(tmp_path / "net.onnx")
    assert main(["--model", "unused", "--photos", str(DEMO / "photos"), "--detections", str(DEMO / "annotations.json"),
                 "--identity", f"onnx:{tmp_path / 'net.onnx'}", "--report", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_identity_spec():
    assert parse_identity("dlib") == "dlib"
    with pytest.raises(IdentityError, match="'dlib' or 'onnx:PATH'"):
        parse_identity("arcface")
    with pytest.raises(IdentityError, match="no such ONNX file"):
        FaceAnalyzer(identity=parse_identity("onnx:/nowhere/net.onnx"))
