"""DDP (gloo on CPU, 2 ranks): per-case metrics gathered once, exactly one record from rank 0."""

from __future__ import annotations

import pytest
import torch

from bench.config import TrainerConfig, sweep_from_dict
from bench.records import load_records
from bench.run import run_one, run_sweep
from bench.run.launch import needs_launch
from tests.conftest import tiny_sweep_dict


def test_needs_launch_only_for_multi_process_ddp(monkeypatch):
    monkeypatch.delenv("SEGBENCH_LAUNCHED", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert needs_launch(TrainerConfig(strategy="ddp", devices=2))
    assert needs_launch(TrainerConfig(strategy="ddp", devices=1, num_nodes=2))
    assert not needs_launch(TrainerConfig(strategy="ddp", devices=1))
    assert not needs_launch(TrainerConfig(strategy="auto", devices=2))
    monkeypatch.setenv("LOCAL_RANK", "0")  # started by torchrun / SLURM: nothing to launch
    assert not needs_launch(TrainerConfig(strategy="ddp", devices=2))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_ddp_two_cpu_ranks_write_one_correct_record(tmp_path, monkeypatch, capfd):
    """``run_sweep`` starts the run in ``python -m bench.run.rank``; Lightning adds rank 1."""
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SEGBENCH_LAUNCHED"):
        monkeypatch.delenv(key, raising=False)
    sweep = tiny_sweep_dict(name="ddp")
    sweep["trainer"].update(strategy="ddp", accelerator="cpu", devices=2, max_steps=2)
    sweep["datasets"][0]["num_test"] = 3  # odd: the distributed sampler repeats one case
    results = tmp_path / "results"
    written = run_sweep(sweep_from_dict(sweep), results, progress=False)
    assert "GLOBAL_RANK: 1" in capfd.readouterr().err  # a second rank really ran

    records = load_records(results)[0]
    assert len(written) == len(records) == 1
    rec = records[0]
    assert rec.status == "done", rec.traceback or rec.error
    assert rec.world_size == 2 and rec.steps == 2 and rec.attempt == 1
    ids = [c["case_id"] for c in rec.cases]
    assert ids == sorted(rec.split["test"]) and len(ids) == 3  # gathered, deduplicated, once
    assert rec.aggregates["dice"]["n"] == 3
    assert written[0].to_dict() == rec.to_dict()  # the launched rank's record, read back
    assert len((results / ".work" / rec.run_id / "starts.log").read_text().splitlines()) == 1
    assert len(list(results.glob("*.json"))) == 1


def test_spawn_strategies_are_refused_with_a_failed_record(tmp_path):
    sweep = tiny_sweep_dict(name="spawn")
    sweep["trainer"].update(strategy="ddp_spawn", devices=2)
    record = run_one(sweep_from_dict(sweep).expand()[0], tmp_path, progress=False)
    assert record.status == "failed" and "use strategy: ddp" in record.error
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_several_devices_without_a_strategy_run_as_ddp_instead_of_hanging(tmp_path):
    """``devices: 3`` with ``strategy: auto`` on CPU used to hang (Lightning re-launched the CLI and
    the extra ranks found the run claimed). It is resolved to the ddp launch path and finishes."""
    import os
    import subprocess
    import sys

    import yaml

    from bench.run import resolve_run

    sweep = tiny_sweep_dict(name="three")
    sweep["trainer"].update(accelerator="cpu", devices=3, max_steps=2)
    cfg = sweep_from_dict(sweep).expand()[0]
    assert cfg.trainer.strategy == "auto" and resolve_run(cfg).trainer.strategy == "ddp"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "SEGBENCH_LAUNCHED")
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            str(path),
            "--results",
            str(tmp_path / "r"),
            "--quiet",
            "--no-leaderboard",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = load_records(tmp_path / "r")[0]
    assert rec.status == "done" and rec.world_size == 3
    assert rec.config["trainer"]["strategy"] == "ddp"
