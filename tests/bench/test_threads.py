"""Threads that fit the machine: the cores this process may use, shared among the run's processes;
``trainer.torch_threads`` and ``$SEGBENCH_THREADS`` override; the record states the number used."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from bench.config import sweep_from_dict
from bench.run import threads as threads_module
from bench.run.threads import choose_threads, run_threads
from tests.conftest import REPO, tiny_sweep_dict


def _cfg(**trainer):
    sweep = tiny_sweep_dict()
    sweep["trainer"] = {**sweep["trainer"], **trainer}
    return sweep_from_dict(sweep).expand()[0]


def _with_workers(cfg, n):
    import dataclasses

    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, num_workers=n))


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 8)


def test_the_default_shares_the_usable_cores_among_the_run_processes(eight_cores):
    cfg = _cfg()
    assert choose_threads(cfg, env={}) == (8, "cores/processes")
    assert choose_threads(_with_workers(cfg, 3), env={})[0] == 2  # 8 cores / (1 + 3 workers)
    assert choose_threads(_with_workers(cfg, 20), env={})[0] == 1  # at least one
    ddp = _cfg(devices=2, strategy="ddp")
    assert choose_threads(ddp, env={})[0] == 4  # two ranks on this machine
    assert choose_threads(ddp, env={"LOCAL_WORLD_SIZE": "4"})[0] == 2  # torchrun's count
    slurm = {"SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "3"}
    assert choose_threads(ddp, env=slurm)[0] == 3  # SLURM gave each task its own 3 cores


def test_the_sweep_field_and_the_environment_override(eight_cores):
    assert choose_threads(_cfg(), env={"SEGBENCH_THREADS": "3"}) == (3, "SEGBENCH_THREADS")
    in_the_sweep = _cfg(torch_threads=5)
    assert choose_threads(in_the_sweep, env={"SEGBENCH_THREADS": "3"}) == (5, "trainer.torch_threads")
    with pytest.raises(ValueError, match="SEGBENCH_THREADS"):
        choose_threads(_cfg(), env={"SEGBENCH_THREADS": "many"})


def test_a_run_sets_its_threads_and_gives_the_old_number_back(monkeypatch):
    monkeypatch.setenv("SEGBENCH_THREADS", "3")
    before = torch.get_num_threads()
    with run_threads(_cfg()) as n:
        assert n == torch.get_num_threads() == 3
        assert os.environ["OMP_NUM_THREADS"] == "3"  # Lightning's DDP launcher keeps it
    assert torch.get_num_threads() == before


def _record_under_affinity(tmp_path, cpus: set[int], **data) -> dict:
    """``segbench run`` of the tiny sweep in a child process pinned to ``cpus``; its record."""
    sweep = tiny_sweep_dict()
    sweep["data"] = {**sweep["data"], **data}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k != "SEGBENCH_THREADS"}  # the default, not the tests' 1
    env["PYTHONPATH"] = str(REPO)  # OMP_NUM_THREADS=1 stays: torch's own default would then be 1
    cmd = [sys.executable, "-m", "bench.cli", "run", str(path), "--results", str(results), "--quiet"]
    out = subprocess.run(
        [*cmd, "--no-leaderboard"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (record,) = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert record["status"] == "done", record.get("error")
    return record


needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs os.sched_setaffinity and at least two usable cores",
)


@needs_affinity
def test_the_record_states_what_the_affinity_allowed(tmp_path):
    first, second = sorted(os.sched_getaffinity(0))[:2]
    one = _record_under_affinity(tmp_path / "one", {first})
    assert one["device"]["cpu_count"] == 1 and one["device"]["torch_threads"] == 1
    two = _record_under_affinity(tmp_path / "two", {first, second})
    assert two["device"]["cpu_count"] == 2 and two["device"]["torch_threads"] == 2


@needs_affinity
def test_dataloader_workers_take_their_share_of_the_cores(tmp_path):
    first, second = sorted(os.sched_getaffinity(0))[:2]
    record = _record_under_affinity(tmp_path, {first, second}, num_workers=1)
    assert record["device"]["cpu_count"] == 2 and record["device"]["torch_threads"] == 1
