"""Several runner processes on one results folder: every run is done exactly once."""

from __future__ import annotations

import yaml

from bench.records import claim, load_records
from tests.conftest import run_cli_workers, tiny_sweep_dict


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
    args = ["run", str(path), "--results", str(results), "--quiet", "--no-leaderboard"]
    outputs = run_cli_workers(args, n=2)

    records = load_records(results)[0]
    assert len(records) == 4 and len({r.run_id for r in records}) == 4
    # two commands started apart, not by --side-by-side: each record says it was started alone
    assert {r.device["side_by_side"] for r in records} == {1}
    assert all(r.done and r.attempt == 1 for r in records)
    for r in records:  # each run started exactly once across both workers
        starts = (results / ".work" / r.run_id / "starts.log").read_text().splitlines()
        assert len(starts) == 1
    executed = [int(out.split(" run(s) executed")[0].split()[-1]) for out in outputs]
    assert sum(executed) == 4


def test_side_by_side_trains_the_runs_in_two_processes(tmp_path):
    """``segbench run --side-by-side 2``: one command, two processes (this one and a child), each
    run trained once, by either; the summary counts the runs of both."""
    import subprocess
    import sys

    from tests.conftest import REPO

    # two short runs: the parent waits until its child holds a claim, so it cannot take both while
    # the child still imports torch
    sweep = tiny_sweep_dict(name="side", seeds=[0, 1], trainer={"max_steps": 100, "log_every_n_steps": 50})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.cli", "run", str(path), "--results", str(results), "--quiet"]
    out = subprocess.run(
        [*cmd, "--no-leaderboard", "--side-by-side", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    records = load_records(results)[0]
    assert len(records) == 2 and all(r.done and r.attempt == 1 for r in records)
    assert len({r.worker["pid"] for r in records}) == 2  # two processes trained
    assert [r.device["side_by_side"] for r in records] == [2, 2]  # each says it shared the machine
    for r in records:
        assert len((results / ".work" / r.run_id / "starts.log").read_text().splitlines()) == 1
    assert "2 run(s) executed, 0 failed, 0 done already" in out.stdout
    assert (results / ".work" / "side-by-side" / "worker-1.log").exists()
    again = subprocess.run([*cmd, "--side-by-side", "2", "--force"], cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 2 and "--side-by-side: not with --force" in again.stderr


def test_side_by_side_in_this_python_process_leaves_no_count_behind(tmp_path):
    """``main(["run", ..., "--side-by-side", "2"])`` called in-process: both records say 2, and a
    run started afterwards in the same process says 1, not the earlier command's count."""
    import os

    from bench.cli import main
    from bench.records.provenance import SIDE_BY_SIDE_ENV

    sweep = tiny_sweep_dict(name="side", seeds=[0, 1], trainer={"max_steps": 100, "log_every_n_steps": 50})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    results = tmp_path / "results"
    args = ["run", str(path), "--results", str(results), "--quiet", "--no-leaderboard"]
    assert main([*args, "--side-by-side", "2"]) == 0
    assert sorted(r.device["side_by_side"] for r in load_records(results)[0]) == [2, 2]
    assert SIDE_BY_SIDE_ENV not in os.environ
    assert main([*args, "-o", "seeds=[2]"]) == 0
    [later] = [r for r in load_records(results)[0] if r.config["seed"] == 2]
    assert later.device["side_by_side"] == 1
