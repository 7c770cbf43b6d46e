import json
import os
import signal
import subprocess
import sys
import time

import yaml

from bench.config import sweep_from_dict
from bench.runner import run_sweep
from bench.store import iter_records
from tests.conftest import tiny_sweep_dict

EXPECTED_METRICS = {"dice", "cldice", "betti0_err", "betti1_err", "ece"}


def test_two_step_fit_writes_a_complete_record(tmp_path):
    sweep = sweep_from_dict(tiny_sweep_dict())
    (record,) = run_sweep(sweep, tmp_path, progress=False)
    assert record["status"] == "done", record.get("traceback")
    assert record["steps"] == 2
    assert record["config"]["model"] == {"name": "unet", "kwargs": {"channels": [4, 8, 16]}}
    assert record["run_id"] == sweep.expand()[0].run_id
    assert len(record["cases"]) == 2 and {c["case_id"] for c in record["cases"]} == set(
        record["split"]["test"]
    )
    assert set(record["cases"][0]) >= EXPECTED_METRICS
    for key in (
        "params",
        "train_seconds",
        "infer_seconds",
        "memory",
        "versions",
        "git",
        "device",
        "started_at",
        "finished_at",
        "aggregates",
    ):
        assert key in record, key
    assert record["params"] > 1000 and record["versions"]["torch"]
    assert record["memory"]["cpu_peak_rss_mb"] > 100 and record["memory"]["cpu_rss_increase_mb"] >= 0
    dice = [c["dice"] for c in record["cases"]]
    assert abs(record["aggregates"]["dice"]["mean"] - sum(dice) / len(dice)) < 1e-12
    on_disk = json.loads((tmp_path / f"{record['run_id']}.json").read_text())
    assert on_disk["status"] == "done" and on_disk["cases"] == json.loads(json.dumps(record["cases"]))
    assert not (tmp_path / ".work" / record["run_id"] / "checkpoints").exists()


def test_resume_skips_done_runs_and_force_supersedes(tmp_path):
    sweep = sweep_from_dict(tiny_sweep_dict(seeds=[0, 1]))
    first = run_sweep(sweep, tmp_path, progress=False)
    assert [r["status"] for r in first] == ["done", "done"]
    assert run_sweep(sweep, tmp_path, progress=False) == []
    again = run_sweep(sweep_from_dict(tiny_sweep_dict(seeds=[0])), tmp_path, force=True, progress=False)
    assert len(again) == 1
    assert len(list((tmp_path / ".superseded").glob("*.json"))) == 1  # the old record is kept aside
    assert len(list(iter_records(tmp_path))) == 2


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = sweep_from_dict(
        tiny_sweep_dict(models=[{"name": "unet", "no_such_option": 1}, {"name": "unet", "channels": [4, 8]}])
    )
    records = run_sweep(sweep, tmp_path, progress=False)
    assert [r["status"] for r in records] == ["failed", "done"]
    assert "no_such_option" in records[0]["error"] and "Traceback" in records[0]["traceback"]
    # a failed run is retried on the next invocation, a done one is not
    retried = run_sweep(sweep, tmp_path, progress=False)
    assert [r["status"] for r in retried] == ["failed"]


def test_kill_9_mid_sweep_then_rerun_completes_only_the_missing_runs(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(tiny_sweep_dict(seeds=[0, 1, 2])))
    results = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "bench.cli",
        "run",
        str(sweep_file),
        "--results",
        str(results),
        "--quiet",
        "--no-leaderboard",
    ]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list(results.glob("*.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert 1 <= len(before) < 3
    for path in results.glob("*.json"):
        assert json.loads(path.read_text())["status"] == "done"
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = {p.name: p.stat().st_mtime_ns for p in results.glob("*.json")}
    assert len(after) == 3
    assert all(after[name] == mtime for name, mtime in before.items())  # done runs untouched
