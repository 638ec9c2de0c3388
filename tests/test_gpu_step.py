"""``bench/gpu_step.py`` runs end to end on this machine: without a GPU it measures a tiny model (the figures are
not GPU figures; the script's table, JSON line, FLOP count and DDP arithmetic are what is checked)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from gpu_step import PEAK_BF16_TFLOPS, peak_tflops  # noqa: E402


def test_peaks_are_found_by_device_name():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA L40S") == 362.0
    assert peak_tflops("NVIDIA GeForce RTX 4090") == 165.0
    assert peak_tflops("Tesla T4") is None and len(PEAK_BF16_TFLOPS) == 6


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU mode; on a GPU the script measures the paper model")
def test_the_gpu_benchmark_runs_its_tiny_cpu_mode():
    result = subprocess.run([sys.executable, "bench/gpu_step.py", "--variants", "eager,lazy_gp", "--devices", "2",
                             "--peak-tflops", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[1].startswith("plain 3x3 conv")
    assert lines[2].startswith("| px | variant | devices | img/s | vs eager | GFLOP/img | TFLOP/s | of peak "
                               "| of plain conv |")
    report = json.loads(lines[-1])
    rows = {(r["variant"], r["devices"]): r for r in report["results"]}
    assert set(rows) == {("eager", 1), ("lazy_gp", 1), ("eager", 2)}
    eager, lazy, ddp = rows["eager", 1], rows["lazy_gp", 1], rows["eager", 2]
    assert all(r["images_per_second"] > 0 and r["resolution"] == 16 for r in rows.values())
    # gp_every = 4: the penalty's FLOPs on one step in four.
    assert 0.6 * eager["flop_per_image"] < lazy["flop_per_image"] < 0.9 * eager["flop_per_image"]
    assert ddp["flop_per_image"] == eager["flop_per_image"]
    assert ddp["ddp_efficiency"] == pytest.approx(ddp["images_per_second"] / (2 * eager["images_per_second"]))
    assert eager["vs_eager"] == 1.0 and eager["fraction_of_peak"] == pytest.approx(eager["tflops"])
    assert eager["of_plain_conv"] == pytest.approx(eager["tflops"] / report["plain_conv_tflops"]["16"])
    assert f"| 16 | lazy_gp | 1 | {lazy['images_per_second']:.1f} |" in result.stdout


def test_unknown_variants_are_named():
    result = subprocess.run([sys.executable, "bench/gpu_step.py", "--variants", "eager,turbo"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown variant(s) ['turbo']" in result.stderr
