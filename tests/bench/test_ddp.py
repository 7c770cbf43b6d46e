"""DDP (gloo on CPU, 2 ranks): per-case metrics gathered once, exactly one record from rank 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.config import TrainerConfig
from bench.runner import needs_launch
from bench.store import iter_records
from tests.conftest import tiny_sweep_dict

REPO = Path(__file__).resolve().parents[2]


def test_needs_launch_only_for_multi_process_ddp(monkeypatch):
    monkeypatch.delenv("SEGBENCH_LAUNCHED", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert needs_launch(TrainerConfig(strategy="ddp", devices=2))
    assert needs_launch(TrainerConfig(strategy="ddp", devices=1, num_nodes=2))
    assert not needs_launch(TrainerConfig(strategy="ddp", devices=1))
    assert not needs_launch(TrainerConfig(strategy="auto", devices=2))
    monkeypatch.setenv("LOCAL_RANK", "0")  # started by torchrun / SLURM: nothing to launch
    assert not needs_launch(TrainerConfig(strategy="ddp", devices=2))


@pytest.mark.skipif(not __import__("torch").distributed.is_available(), reason="no torch.distributed")
def test_ddp_two_cpu_ranks_write_one_correct_record(tmp_path):
    sweep = tiny_sweep_dict(name="ddp")
    sweep["trainer"].update(strategy="ddp", accelerator="cpu", devices=2, max_steps=2)
    sweep["datasets"][0]["num_test"] = 3  # odd: the distributed sampler repeats one case
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SEGBENCH_LAUNCHED"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "bench.cli", "run", str(path), "--results", str(results)]
    proc = subprocess.run(
        [*cmd, "--quiet", "--no-leaderboard"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 1" in proc.stderr  # a second rank really ran

    records = list(iter_records(results))
    assert len(records) == 1
    rec = records[0]
    assert rec["status"] == "done", rec.get("traceback")
    assert rec["world_size"] == 2 and rec["steps"] == 2 and rec["attempt"] == 1
    ids = [c["case_id"] for c in rec["cases"]]
    assert ids == sorted(rec["split"]["test"]) and len(ids) == 3  # gathered, deduplicated, once
    assert rec["aggregates"]["dice"]["n"] == 3
    assert len((results / ".work" / rec["run_id"] / "starts.log").read_text().splitlines()) == 1
    assert len(list(results.glob("*.json"))) == 1
