"""Nothing is lost when a sweep dies: SIGKILL at random moments (during fit, while writing a record,
while rendering the leaderboard), re-run after each kill; the final records equal those of an
uninterrupted sweep with the same seeds (per-case metrics identical on CPU) and no temporary file
is left behind."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import tiny_sweep_dict

REPO = Path(__file__).resolve().parents[2]


def _sweep(path: Path) -> Path:
    sweep = tiny_sweep_dict(name="faults", seeds=[0, 1, 2])
    # 2 steps per epoch, validation (and a checkpoint) at every epoch end
    sweep["trainer"] = {"max_steps": 6, "log_every_n_steps": 1, "check_val_every_n_epoch": 1}
    sweep["eval"] = {"sw_batch_size": 4, "save_predictions": 1}
    path.write_text(yaml.safe_dump(sweep))
    return path


def _cmd(sweep: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "bench.cli", "run", str(sweep), "--results", str(results), "--quiet"]


def _env(fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SEGBENCH_FAULT"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if fault:
        env["SEGBENCH_FAULT"] = fault
    return env


def _records(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}


def _temp_files(*folders: Path) -> list[Path]:
    return [p for f in folders for p in f.rglob("*") if ".tmp" in p.name]


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep.yaml")
    ref_dir = tmp_path / "ref" / "results"
    t0 = time.monotonic()
    subprocess.run(_cmd(sweep, ref_dir), env=_env(), check=True, capture_output=True, timeout=600)
    full = time.monotonic() - t0
    reference = _records(ref_dir)
    assert len(reference) == 3 and all(r["status"] == "done" for r in reference.values())

    results = tmp_path / "crash" / "results"
    rng = random.Random(12)
    kills = 0
    # kills at chosen moments: inside a record's atomic write, inside the leaderboard's, mid-fit
    for fault in (
        "record_write",
        f"atomic_write:{next(iter(reference))}.json",
        "atomic_write:leaderboard.md",
        "step:3",
        "checkpoint:4",
    ):
        proc = subprocess.run(_cmd(sweep, results), env=_env(fault), capture_output=True, timeout=600)
        if proc.returncode == -signal.SIGKILL:
            kills += 1
    # and at random moments, from outside
    for _ in range(3):
        proc = subprocess.Popen(
            _cmd(sweep, results), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.3, max(full / 2, 1.0)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 5
    final = subprocess.run(_cmd(sweep, results), env=_env(), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]

    got = _records(results)
    assert set(got) == set(reference)
    for run_id, rec in got.items():
        assert rec["status"] == "done", rec.get("error")
        assert rec["cases"] == reference[run_id]["cases"], run_id  # identical per-case metrics
        assert rec["steps"] == reference[run_id]["steps"]
        assert rec["lr_trace"] == reference[run_id]["lr_trace"]
    assert any(r["attempt"] > 1 for r in got.values())  # some run really was resumed or restarted
    assert (results / "leaderboard.md").is_file()
    assert _temp_files(results, results.parent) == []
    assert not list(results.glob(".work/*/checkpoints/*"))  # done runs leave no checkpoint
