"""``segbench status`` on a hand-made results folder: done, failed, running (a claim held by a live
child process), queued and ended-without-a-record SLURM tasks, stale claims, bad files, a sweep."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from bench.cli import main as cli_main
from bench.cluster import status
from bench.config import sweep_from_dict
from bench.records.store import claim
from tests.conftest import tiny_sweep_dict

SINCE = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def _record(results: Path, run_id: str, **fields) -> None:
    data = {"schema": 2, "kind": "train", "run_id": run_id, **fields}
    (results / f"{run_id}.json").write_text(json.dumps(data))


@pytest.fixture
def holder(tmp_path):
    """A live child process that holds the claim of ``run_held`` (flock) with a SLURM claim file."""
    results = tmp_path / "results"
    (results / ".claims").mkdir(parents=True)
    code = textwrap.dedent(f"""
        import fcntl, json, os, sys
        fh = open({str(results / ".claims" / "run_held.lock")!r}, "a+")
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write(json.dumps({{"pid": os.getpid(), "host": "vm3", "since": {SINCE}, "slurm_job_id": "55",
                             "slurm_array_job_id": "50", "slurm_array_task_id": "5", "slurm_node": "gpu07"}}))
        fh.flush()
        print("ready", flush=True)
        sys.stdin.read()
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "ready"
    yield results, child
    child.kill()
    child.wait()


def _folder(results: Path) -> None:
    _record(
        results,
        "run_done",
        status="done",
        finished_at="2026-01-02T03:04:05+00:00",
        attempt=2,
        worker={
            "pid": 1,
            "host": "n1",
            "slurm_job_id": "12",
            "slurm_array_job_id": "10",
            "slurm_array_task_id": "2",
        },
    )
    _record(results, "run_failed", status="failed", error="RuntimeError: CUDA out of memory\n  at line 3")
    (results / ".claims" / "run_stale.lock").write_text(json.dumps({"pid": 999999, "host": "gone"}))
    (results / ".slurm").mkdir()
    ledger = {
        "job_id": "60",
        "submitted_at": "2026-01-01T00:00:00+00:00",
        "logs": "/logs/60",
        "tasks": {"run_queued": "60_1", "run_gone": "60_2", "run_failed": "60_3"},
    }
    (results / ".slurm" / "submissions.jsonl").write_text(json.dumps(ledger) + "\n")
    (results / "broken.json").write_text("{not json")


QUEUE = {
    "60_1": status.QueueEntry("60_1", "PENDING", "", "Resources"),
    "60_2": status.QueueEntry("60_2", "CANCELLED", "", ""),
}


def test_every_state_of_a_hand_made_results_folder(holder, monkeypatch):
    results, child = holder
    _folder(results)
    monkeypatch.setattr(status, "queue_entries", lambda: QUEUE)  # what squeue would list
    rows, notes = status.collect(results)
    got = {r.run_id: (r.state, r.detail) for r in rows}
    assert got == {
        "run_done": ("done", "finished 2026-01-02T03:04:05+00:00, job 10_2, attempt 2"),
        "run_failed": ("failed", "RuntimeError: CUDA out of memory"),
        "run_held": ("running", f"job 50_5 on gpu07 (pid {child.pid}, since 2023-11-14 22:13:20 UTC)"),
        "run_stale": ("to run", ""),
        "run_queued": ("queued", "job 60_1 pending (Resources)"),
        "run_gone": ("to run", "job 60_2 ended without a record (cancelled); log in /logs/60"),
    }
    assert [r.run_id for r in rows] == sorted(got)
    assert len(notes) == 1 and "broken.json" in notes[0] and "not valid JSON" in notes[0]
    text = status.render(rows)
    assert text.splitlines()[-1] == "6 run(s): 1 done, 1 running, 1 queued, 1 failed, 2 to run"


def test_the_probe_never_takes_a_claim_and_a_dead_holder_frees_it(holder):
    results, child = holder
    assert status.claim_holder(results, "run_held")["slurm_job_id"] == "55"
    assert claim(results, "run_held") is None  # still the child's after the probe
    assert status.claim_holder(results, "run_never") is None  # no claim file at all
    child.kill()
    child.wait()
    assert status.claim_holder(results, "run_held") is None  # the kernel dropped the dead child's lock
    mine = claim(results, "run_held")  # and the probe left it free
    assert mine is not None
    assert status.claim_holder(results, "run_held")["pid"] > 0
    mine.release()


def test_status_command_with_a_sweep_lists_its_runs_in_order(tmp_path, capsys):
    sweep = tiny_sweep_dict(name="st", seeds=[0, 1, 2])
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    results = tmp_path / "results"
    results.mkdir()
    ids = [cfg.run_id for cfg in sweep_from_dict(sweep).expand()]
    _record(results, ids[1], status="done", finished_at="2026-01-01T00:00:00+00:00", attempt=1)
    _record(results, "not_in_this_sweep", status="failed", error="x")

    assert cli_main(["status", str(path), "--results", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:5]] == ids
    assert lines[3].split()[1] == "done" and lines[2].split()[1:3] == ["to", "run"]
    assert lines[-1] == "3 run(s): 1 done, 0 running, 0 queued, 0 failed, 2 to run"

    assert cli_main(["status", str(path), "--results", str(results), "-o", "seeds=[1]"]) == 0
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == "1 run(s): 1 done, 0 running, 0 queued, 0 failed, 0 to run"
    )


def test_status_without_squeue_still_reports_and_says_why(tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    (results / ".slurm").mkdir(parents=True)
    ledger = {"job_id": "7", "submitted_at": "2026-01-01T00:00:00+00:00", "logs": "/l", "tasks": {"r": "7"}}
    (results / ".slurm" / "submissions.jsonl").write_text(json.dumps(ledger) + "\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue here
    assert cli_main(["status", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "job 7 ended without a record" in out and "note: queue not read: squeue not found" in out
