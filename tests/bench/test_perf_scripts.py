"""The benchmark scripts run and print their tables (figures themselves are not asserted)."""

import os
import subprocess
import sys


def test_model_benchmark_prints_a_row_per_model_and_dim():
    # through the console command, which must exit 0 after the table (it crashed on the rows)
    cmd = [
        sys.executable,
        "-m",
        "bench.cli",
        "bench",
        "models",
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


def test_sweep_cost_counts_metrics_and_the_test_loop_outside():
    from bench.perf.suite import cost_shares

    records = [
        {"status": "done", "train_seconds": 40.0, "test_seconds": 5.0, "infer_seconds": 3.0},
        {"status": "done", "train_seconds": 50.0, "test_seconds": 5.0, "infer_seconds": 4.0},
        {"status": "failed", "train_seconds": 1.0},
    ]
    cost = cost_shares(records, 110.0)
    assert (cost["runs"], cost["failed"]) == (3, 1)
    assert (cost["fit_s"], cost["test_s"], cost["inference_s"]) == (91.0, 10.0, 7.0)
    assert abs(cost["outside_share"] - 12 / 110) < 1e-12  # 110 - 91 fit - 7 inference
    assert abs(cost["outside_share_test_inside"] - 9 / 110) < 1e-12
