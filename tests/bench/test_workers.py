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
    assert all(r.done and r.attempt == 1 for r in records)
    for r in records:  # each run started exactly once across both workers
        starts = (results / ".work" / r.run_id / "starts.log").read_text().splitlines()
        assert len(starts) == 1
    executed = [int(out.split(" run(s) executed")[0].split()[-1]) for out in outputs]
    assert sum(executed) == 4
