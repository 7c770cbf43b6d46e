import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from bench.cli import main
from bench.config import sweep_from_dict
from bench.records import RECORD_SCHEMA, load_records
from bench.run import run_sweep
from tests.conftest import tiny_sweep_dict

EXPECTED_METRICS = {"dice", "cldice", "betti0_err", "betti1_err", "ece"}


def test_two_step_fit_writes_a_complete_record(tmp_path):
    sweep = sweep_from_dict(tiny_sweep_dict())
    (record,) = run_sweep(sweep, tmp_path, progress=False)
    assert record.status == "done", record.traceback
    assert record.steps == 2
    assert record.config["model"] == {"name": "unet", "kwargs": {"channels": [4, 8, 16]}}
    assert record.run_id == sweep.expand()[0].run_id
    assert len(record.cases) == 2 and {c["case_id"] for c in record.cases} == set(record.split["test"])
    assert set(record.cases[0]) >= EXPECTED_METRICS
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
        assert key in record.to_dict(), key
    assert record.params > 1000 and record.versions["torch"]
    assert record.memory["cpu_peak_rss_mb"] > 100 and record.memory["cpu_rss_increase_mb"] >= 0
    dice = [c["dice"] for c in record.cases]
    assert abs(record.aggregates["dice"]["mean"] - sum(dice) / len(dice)) < 1e-12
    on_disk = json.loads((tmp_path / f"{record.run_id}.json").read_text())
    assert on_disk == json.loads(json.dumps(record.to_dict()))  # what was returned is what was written
    assert list(on_disk)[:6] == ["schema", "kind", "run_id", "config_hash", "config", "status"]
    assert not (tmp_path / ".work" / record.run_id / "checkpoints").exists()


def test_resume_skips_done_runs_and_force_supersedes(tmp_path):
    sweep = sweep_from_dict(tiny_sweep_dict(seeds=[0, 1]))
    first = run_sweep(sweep, tmp_path, progress=False)
    assert [r.status for r in first] == ["done", "done"]
    assert run_sweep(sweep, tmp_path, progress=False) == []
    again = run_sweep(sweep_from_dict(tiny_sweep_dict(seeds=[0])), tmp_path, force=True, progress=False)
    assert len(again) == 1
    assert len(list((tmp_path / ".superseded").glob("*.json"))) == 1  # the old record is kept aside
    assert len(load_records(tmp_path)[0]) == 2


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = sweep_from_dict(
        tiny_sweep_dict(
            models=[{"name": "resenc_unet", "filters": [4, 8]}, {"name": "unet", "channels": [4, 8]}]
        )
    )
    records = run_sweep(sweep, tmp_path, progress=False)
    assert [r.status for r in records] == ["failed", "done"]
    assert "at least 3 levels" in records[0].error and "Traceback" in records[0].traceback
    # a failed run is retried on the next invocation, a done one is not
    retried = run_sweep(sweep, tmp_path, progress=False)
    assert [r.status for r in retried] == ["failed"]


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


def test_record_states_the_config_as_used_and_the_schedule(tmp_path):
    """No patch size given: the record holds the dataset default; UNETR gets img_size = patch from
    the registry; lr_trace follows the warm-up + poly schedule (computed here by hand)."""
    sweep = tiny_sweep_dict(
        models=[{"name": "unetr", "hidden_size": 32, "mlp_dim": 32, "num_heads": 2, "feature_size": 4}]
    )
    sweep["data"] = {"batch_size": 2, "samples_per_epoch": 4}  # patch_size: the dataset default
    sweep["trainer"] = {"max_steps": 6, "val_check_interval": 2, "log_every_n_steps": 1}
    sweep["optim"] = {"lr": 0.01, "warmup_steps": 2, "scheduler": "poly"}
    (record,) = run_sweep(sweep_from_dict(sweep), tmp_path, progress=False)
    assert record.status == "done", record.traceback
    assert record.schema == RECORD_SCHEMA == 3 and record.kind == "train"
    from datamodules.synthetic import SyntheticVesselsDataModule

    patch = list(SyntheticVesselsDataModule.default_patch_size)
    assert record.config["data"]["patch_size"] == patch
    assert record.config["model"]["kwargs"]["img_size"] == patch
    assert "resumed_from_step" in record.to_dict() and record.resumed_from_step is None
    assert record.attempt == 1
    assert [s for s, _ in record.lr_trace] == [2, 4, 6]
    for step, lr in record.lr_trace:
        t = (step - 2) / (6 - 2)
        assert lr == pytest.approx(0.01 * (1 - t) ** 0.9 if step >= 2 else 0.01 * (step + 1) / 2)
    assert record.split["test_source"] in ("official", "held_out")
    assert isinstance(record.split["skipped"], dict)


def test_dry_run_lists_states_and_trains_nothing(tmp_path, capsys):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(tiny_sweep_dict(seeds=[0, 1])))
    results = tmp_path / "results"
    run_sweep(sweep_from_dict(tiny_sweep_dict(seeds=[0])), results, progress=False)
    before = sorted(p.name for p in results.rglob("*"))
    assert main(["run", str(sweep_file), "--results", str(results), "--dry-run"]) == 0
    out = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("segbench run:")]
    ids = [r.run_id for r in sweep_from_dict(tiny_sweep_dict(seeds=[0, 1])).expand()]
    assert out[0] == f"done    {ids[0]}" and out[1] == f"to run  {ids[1]}"
    assert "1 done, 0 failed, 1 to run" in out[2]
    assert sorted(p.name for p in results.rglob("*")) == before  # nothing trained or written
