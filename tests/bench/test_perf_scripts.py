"""The benchmark scripts run and print their tables (figures themselves are not asserted)."""

import os
import subprocess
import sys


def test_model_benchmark_prints_a_row_per_model_and_dim():
    cmd = [
        sys.executable,
        "-m",
        "bench.perf.models",
        "--models",
        "unet",
        "umamba_bot",
        "--dims",
        "2",
        "--size2d",
        "32",
        "--repeats",
        "1",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [
        line
        for line in out.stdout.splitlines()
        if line.startswith("| unet") or line.startswith("| umamba_bot")
    ]
    assert len(rows) == 2
    params = int(rows[0].split("|")[5].strip().replace(",", ""))
    assert params == 401_605  # the registry's unet at its default size


def test_metric_benchmark_checks_equality_with_every_reference():
    cmd = [sys.executable, "-m", "bench.perf.metrics", "--sizes", "24", "--drive-case", "", "--repeat", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if " vs " in line and line.startswith("| ")]
    names = {row.split("|")[1].strip() for row in rows}
    assert names == {
        "betti_numbers vs gudhi",
        "cldice vs paper+skimage",
        "ece vs torchmetrics",
        "hd95 vs MONAI",
        "nsd vs MONAI",
    }
    assert all(row.rstrip(" |").endswith("yes") for row in rows)
