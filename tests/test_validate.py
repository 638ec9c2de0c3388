import numpy as np

from data.convert import convert
from data.demo import build_demo
from data.prepared import PreparedDataset
from data.validate import main, validate
from tests.datasets import write_fdf


def test_validate_counts_problems_by_kind(tmp_path, capsys):
    write_fdf(tmp_path, train=5, val=0)
    (tmp_path / "images" / "CC-BY" / "1.png").write_bytes(b"junk")
    (tmp_path / "images" / "CC-BY" / "3.png").unlink()
    count, problems, errors = validate(str(tmp_path), progress=False)
    assert count == 5 and problems == {"corrupt_image": 1, "missing_image": 1}
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "5 samples, 2 problem(s)" in out and "corrupt_image: 1" in out and "3.png [index 3]" in out


def test_validate_detects_a_changed_prepared_file(tmp_path):
    write_fdf(tmp_path / "fdf", train=3, val=0)
    convert(str(tmp_path / "fdf"), str(tmp_path / "p"), progress=False)
    assert main([str(tmp_path / "p")]) == 0
    images = np.memmap(tmp_path / "p" / "images.u8", dtype=np.uint8, mode="r+")
    images[5] ^= 1
    images.flush()
    _, problems, errors = validate(str(tmp_path / "p"), progress=False)
    assert problems == {"checksum": 1} and "images.u8" in str(errors[0])


def test_missing_dataset(tmp_path):
    _, problems, _ = validate(str(tmp_path / "nope"), progress=False)
    assert problems == {"missing_dataset": 1}


def test_demo_set_builds_reproducibly(tmp_path):
    first = build_demo(tmp_path / "a")
    assert first["count"] == 6 * 49 and first["skipped_count"] == 0
    assert build_demo(tmp_path / "b")["checksums"] == first["checksums"]
    dataset = PreparedDataset(tmp_path / "a")
    present = (dataset.keypoints >= 0) & (dataset.keypoints < 1)
    assert present.all(axis=2)[:, :5].mean() > 0.95  # face keypoints annotated on (nearly) every sample
    assert validate(str(tmp_path / "a"), progress=False)[1] == {}
