"""Several runner processes on one results folder: every run is done exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from bench.store import claim, iter_records
from tests.conftest import tiny_sweep_dict

REPO = Path(__file__).resolve().parents[2]


def test_a_claim_is_exclusive_and_released(tmp_path):
    first = claim(tmp_path, "run_a")
    assert first is not None
    assert claim(tmp_path, "run_a") is None  # held (a second open file description)
    assert claim(tmp_path, "run_b") is not None
    first.release()
    again = claim(tmp_path, "run_a")
    assert again is not None
    again.release()


def test_two_runner_processes_share_a_four_run_sweep(tmp_path):
    sweep = tiny_sweep_dict(name="workers", seeds=[0, 1], losses=["dice_ce", "dice"])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.cli", "run", str(path), "--results", str(results)]
    cmd += ["--quiet", "--no-leaderboard"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    records = list(iter_records(results))
    assert len(records) == 4 and len({r["run_id"] for r in records}) == 4
    assert all(r["status"] == "done" and r["attempt"] == 1 for r in records)
    for r in records:  # each run started exactly once across both workers
        starts = (results / ".work" / r["run_id"] / "starts.log").read_text().splitlines()
        assert len(starts) == 1
    executed = [int(out.split(" run(s) executed")[0].split()[-1]) for out in outputs]
    assert sum(executed) == 4
