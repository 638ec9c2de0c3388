import json

import numpy as np
import pytest
from PIL import Image

from data.convert import convert
from data.fdf import DeepPrivacyLayoutDataset, FDFDataset
from data.prepared import PreparedDataset
from data.record import DataError
from data.sources import open_dataset
from tests.datasets import BOX, face_image, keypoints, write_deepprivacy, write_fdf


def test_official_fdf_release_split_by_category(tmp_path):
    write_fdf(tmp_path, train=4, val=2)
    train, val = FDFDataset(tmp_path, "train"), FDFDataset(tmp_path, "val")
    assert (len(train), len(val)) == (4, 2)
    record = val[1]
    assert record.index == 5 and record.source.endswith("CC-BY/5.png")  # found in a licence subfolder
    assert np.array_equal(record.image, face_image(5))
    np.testing.assert_allclose(record.box, BOX)
    np.testing.assert_allclose(record.keypoints, keypoints(5), atol=1e-6)


def test_deepprivacy_layout_with_pixel_boxes(tmp_path):
    write_deepprivacy(tmp_path, count=3)
    dataset = open_dataset(tmp_path, "train")
    assert isinstance(dataset, DeepPrivacyLayoutDataset) and len(dataset) == 3
    np.testing.assert_allclose(dataset[2].box, BOX)
    assert np.array_equal(dataset[2].image, face_image(2))


def test_deepprivacy_layout_with_normalized_boxes(tmp_path):
    write_deepprivacy(tmp_path, count=2)
    np.save(tmp_path / "train" / "bounding_box" / "128.npy", np.array([BOX] * 2, dtype=np.float32))
    dataset = DeepPrivacyLayoutDataset(tmp_path, "train", box_units="normalized")
    np.testing.assert_allclose(dataset[1].box, BOX)
    as_pixels = DeepPrivacyLayoutDataset(tmp_path, "train")  # the default reads the same numbers as pixels
    np.testing.assert_allclose(as_pixels[1].box, np.array(BOX) / 128, rtol=1e-6)


def test_convert_round_trip_is_exact(tmp_path):
    write_fdf(tmp_path / "fdf", train=5, val=1)
    manifest = convert(str(tmp_path / "fdf"), str(tmp_path / "prepared"), workers=2, progress=False)
    assert manifest["count"] == 5 and manifest["skipped_count"] == 0
    prepared, source = PreparedDataset(tmp_path / "prepared"), FDFDataset(tmp_path / "fdf")
    assert prepared.verify_checksums() == []
    for i in range(5):
        assert np.array_equal(prepared[i].image, source[i].image)
        assert np.array_equal(prepared[i].keypoints, source[i].keypoints)
    batch = prepared.__getitems__([4, 0, 2])
    assert batch.image.shape == (3, 3, 128, 128) and batch.index.tolist() == [4, 0, 2]
    assert np.array_equal(batch.image[0].numpy().transpose(1, 2, 0), source[4].image)
    assert prepared.source_index.tolist() == [0, 1, 2, 3, 4]


# --- bad input: each names the file and the index ---------------------------------------------------------


def corrupt(path):
    path.write_bytes(path.read_bytes()[:200])  # truncated PNG


def garbage(path):
    path.write_bytes(b"not a png at all")


def wrong_size(path):
    Image.fromarray(face_image(0, size=64)).save(path)


def grayscale(path):
    Image.fromarray(face_image(0)[..., 0]).save(path)


def rgba(path):
    Image.fromarray(np.dstack([face_image(0), face_image(1)[..., :1]])).save(path)


def missing(path):
    path.unlink()


@pytest.mark.parametrize(
    "damage, problem",
    [(corrupt, "corrupt_image"), (garbage, "corrupt_image"), (wrong_size, "wrong_size"),
     (grayscale, "wrong_channels"), (rgba, "wrong_channels"), (missing, "missing_image")],
)
def test_bad_images_name_file_and_index(tmp_path, damage, problem):
    write_fdf(tmp_path, train=4, val=0)
    damage(tmp_path / "images" / "CC-BY" / "3.png")
    dataset = FDFDataset(tmp_path)
    assert dataset[2].index == 2  # the others still read
    with pytest.raises(DataError) as error:
        dataset[3]
    assert error.value.problem == problem
    assert "3.png" in str(error.value) and "[index 3]" in str(error.value)


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("landmark", [[float("nan"), 0.5]] + [[0.5, 0.5]] * 6, "bad_keypoints"),
        ("landmark", [[0.5, float("inf")]] * 7, "bad_keypoints"),
        ("landmark", [[0.5, 0.5]] * 6, "bad_keypoints"),
        ("bounding_box", [0.2, 0.2, 1.3, 0.8], "bad_box"),
        ("bounding_box", [-0.1, 0.2, 0.5, 0.8], "bad_box"),
        ("bounding_box", [0.7, 0.2, 0.3, 0.8], "bad_box"),
        ("bounding_box", [0.2, 0.2, 0.2, 0.8], "bad_box"),
    ],
)
def test_bad_annotations_name_file_and_index(tmp_path, field, value, problem):
    write_fdf(tmp_path, train=3, val=0)
    meta = json.loads((tmp_path / "fdf_metainfo.json").read_text())
    meta["1"][field] = value
    (tmp_path / "fdf_metainfo.json").write_text(json.dumps(meta))
    with pytest.raises(DataError) as error:
        FDFDataset(tmp_path)[1]
    assert error.value.problem == problem and "[index 1]" in str(error.value) and "1.png" in str(error.value)


def test_absent_keypoints_are_not_errors(tmp_path):
    write_fdf(tmp_path, train=1, val=0)
    meta = json.loads((tmp_path / "fdf_metainfo.json").read_text())
    meta["0"]["landmark"] = [[-1, -1]] * 3 + [[1.0, 0.5], [0.5, 2.0]] + [[-1, -1]] * 2
    (tmp_path / "fdf_metainfo.json").write_text(json.dumps(meta))
    assert FDFDataset(tmp_path)[0].keypoints[3].tolist() == [1.0, 0.5]


def test_length_mismatch_and_empty(tmp_path):
    write_deepprivacy(tmp_path / "dp", count=3)
    np.save(tmp_path / "dp" / "train" / "landmarks.npy", np.zeros((2, 7, 2), np.float32))
    with pytest.raises(DataError, match="landmarks.npy has 2 rows, 128.npy has 3") as error:
        DeepPrivacyLayoutDataset(tmp_path / "dp")
    assert error.value.problem == "length_mismatch"
    write_fdf(tmp_path / "fdf", train=2, val=0)
    with pytest.raises(DataError, match="no faces with category 'validation'"):
        FDFDataset(tmp_path / "fdf", "val")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="expected manifest.json"):
        open_dataset(tmp_path / "nothing")


def test_prepared_length_mismatch_is_refused(tmp_path):
    write_fdf(tmp_path / "fdf", train=3, val=0)
    convert(str(tmp_path / "fdf"), str(tmp_path / "p"), progress=False)
    np.save(tmp_path / "p" / "boxes.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(DataError, match="boxes.npy: length_mismatch: 2 rows, manifest.json says 3"):
        PreparedDataset(tmp_path / "p")


def test_convert_stops_at_bad_sample_unless_skipping(tmp_path):
    write_fdf(tmp_path / "fdf", train=4, val=0)
    corrupt(tmp_path / "fdf" / "images" / "CC-BY" / "1.png")
    with pytest.raises(DataError, match=r"1.png \[index 1\]: corrupt_image"):
        convert(str(tmp_path / "fdf"), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    with pytest.warns(UserWarning, match=r"skipped 1 of 4 samples \{'corrupt_image': 1\}"):
        manifest = convert(str(tmp_path / "fdf"), str(tmp_path / "out"), skip_bad=True, workers=2, progress=False)
    assert manifest["count"] == 3
    assert [s["problem"] for s in manifest["skipped"]] == ["corrupt_image"]
    assert "[index 1]" in manifest["skipped"][0]["where"]
    assert PreparedDataset(tmp_path / "out").source_index.tolist() == [0, 2, 3]
