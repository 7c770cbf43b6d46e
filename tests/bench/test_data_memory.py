"""The memory benchmark (bench/perf/data_memory.py) runs at a tiny size and prints its table with a
disk-cache and an in-memory row per N, the ratios and the verdicts (the figures are not asserted)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_data_memory_prints_both_loaders_per_size(tmp_path):
    work = tmp_path / "work"
    cmd = [
        sys.executable,
        "-m",
        "bench.perf.data_memory",
        "--cases",
        "3",
        "4",
        "--size",
        "16",
        "--patch",
        "8",
        "--samples",
        "4",
        "--start-method",
        "fork",
        "--folder",
        str(work),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    table = out.stdout[out.stdout.index("| N | loader |") :]
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| ")]
    cells = {(n.strip(), mode.strip()) for n, mode in rows}
    for n in ("3", "4"):
        assert {(n, "fill"), (n, "disk cache"), (n, "in memory")} <= cells
    ratios = [
        line for line in table.splitlines() if line.startswith(("| 3 | ", "| 4 | ")) and line.count("|") == 4
    ]
    assert len(ratios) == 2  # RSS in memory / disk cache, throughput disk cache / in memory
    for verdict in ("peak RSS flat across N", "peak RSS below 2 GB", "throughput at least the in-memory"):
        assert verdict in table
    assert not work.exists()  # the generated data is deleted
