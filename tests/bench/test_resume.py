"""Resume is done, not claimed: a run killed (SIGKILL) after a checkpoint resumes from it and ends
with the same per-case metrics as a run that was never killed; the record says from which step
it resumed and how many attempts it took."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = """
import json
import sys
from bench.config import sweep_from_dict
from bench.run import run_sweep
cadence = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {"check_val_every_n_epoch": 1}
sweep = sweep_from_dict({
    "models": [{"name": "unet", "channels": [4, 8]}],
    "trainer": {"max_steps": 10, "checkpoint_every_n_steps": int(sys.argv[2]), **cadence},
    "optim": {"warmup_steps": 2},
    "data": {"patch_size": [32, 32], "samples_per_epoch": 8, "batch_size": 2},
    "eval": {"save_predictions": 0},
})
run_sweep(sweep, sys.argv[1], progress=False)
"""


def _run(results: Path, fault: str | None, every: int = 3, cadence: dict | None = None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "SEGBENCH_FAULT"}
    if fault:
        env["SEGBENCH_FAULT"] = fault
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    extra = [json.dumps(cadence)] if cadence else []
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(results), str(every), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode


def _record(results: Path) -> dict:
    [path] = list(results.glob("*.json"))
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    results = tmp_path_factory.mktemp("clean")
    assert _run(results, None) == 0
    return _record(results)


@pytest.mark.parametrize("fault", ["step:5", "checkpoint:3", "before_test"])
def test_killed_run_resumes_to_identical_metrics(tmp_path: Path, uninterrupted: dict, fault: str) -> None:
    assert _run(tmp_path, fault) == -9  # really killed
    assert not list(tmp_path.glob("*.json"))  # no record claims anything yet
    ckpt = next(tmp_path.glob(".work/*/checkpoints/last.ckpt"))
    assert ckpt.exists()
    assert _run(tmp_path, None) == 0
    rec = _record(tmp_path)
    assert rec["status"] == "done"
    assert rec["attempt"] == 2
    expected_step = {"step:5": 4, "checkpoint:3": 3, "before_test": 10}[fault]
    assert rec["resumed_from_step"] == expected_step
    assert rec["steps"] == uninterrupted["steps"] == 10
    assert rec["cases"] == uninterrupted["cases"]  # per-case metrics identical on CPU
    assert rec["lr_trace"] == uninterrupted["lr_trace"]
    assert rec["val_trace"] == uninterrupted["val_trace"]  # the learning curve spans both attempts
    assert [p[0] for p in rec["val_trace"]] == [s for s, _ in rec["lr_trace"]]
    assert uninterrupted["resumed_from_step"] is None and uninterrupted["attempt"] == 1
    assert not list(tmp_path.rglob("*.tmp"))


def _clock_seconds(ckpt: Path) -> float | None:
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)["callbacks"]
    return state["TrainClock"]["seconds"] if "TrainClock" in state else None


def test_a_resumed_run_counts_the_training_time_its_checkpoint_stored(tmp_path: Path) -> None:
    """Killed before the test (all 10 steps trained), the second attempt trains nothing: its record's
    train_seconds is the first attempt's training up to the checkpoint plus the second's fit."""
    assert _run(tmp_path, "before_test") == -9
    stored = _clock_seconds(next(tmp_path.glob(".work/*/checkpoints/last.ckpt")))
    assert stored is not None and stored > 0
    assert _run(tmp_path, None) == 0
    rec = _record(tmp_path)
    assert rec["resumed_from_step"] == 10 and stored <= rec["train_seconds"] < stored + 60


def test_a_checkpoint_without_a_clock_leaves_train_seconds_unknown(tmp_path: Path) -> None:
    import torch

    assert _run(tmp_path, "before_test") == -9
    ckpt = next(tmp_path.glob(".work/*/checkpoints/last.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    del state["callbacks"]["TrainClock"]  # as a checkpoint written before segbench kept the clock
    torch.save(state, ckpt)
    assert _run(tmp_path, None) == 0
    rec = _record(tmp_path)
    assert rec["status"] == "done" and rec["resumed_from_step"] == 10
    assert rec.get("train_seconds", "absent") is None, rec.get("train_seconds")


def test_a_validation_after_its_steps_checkpoint_is_kept_across_resume(tmp_path: Path) -> None:
    """Checkpoints every 4 steps and validation every epoch of 4 steps: step 8's checkpoint is
    written before step 8's validation. Killed at step 9, the run resumes from 8 with that
    validation's point of the learning curve (the checkpoint is written again after it)."""
    clean = tmp_path / "clean"
    assert _run(clean, None, every=4) == 0
    killed = tmp_path / "killed"
    assert _run(killed, "step:9", every=4) == -9
    assert _run(killed, None, every=4) == 0
    rec, ref = _record(killed), _record(clean)
    assert rec["resumed_from_step"] == 8 and [p[0] for p in ref["val_trace"]] == [4, 8]
    assert rec["val_trace"] == ref["val_trace"] and rec["lr_trace"] == ref["lr_trace"]


@pytest.mark.parametrize(("fault", "every", "from_step"), [("validation:8", 4, 4), ("validation:10", 5, 8)])
def test_a_run_killed_during_a_validation_keeps_that_point_of_its_curve(
    tmp_path: Path, fault: str, every: int, from_step: int
) -> None:
    """Validating every 4 steps and after the last (step 10), killed while it validates after step
    8 or after step 10, the run resumes from a checkpoint written before that step's training,
    trains the step again and validates it: the resumed run's learning curve is the uninterrupted
    run's, point for point, the last one included (a checkpoint written between the step and its
    validation would resume after the step and never validate it)."""
    cadence = {"val_every_n_steps": 4}
    clean = tmp_path / "clean"
    assert _run(clean, None, every=every, cadence=cadence) == 0
    killed = tmp_path / "killed"
    assert _run(killed, fault, every=every, cadence=cadence) == -9
    assert _run(killed, None, every=every, cadence=cadence) == 0
    rec, ref = _record(killed), _record(clean)
    assert [p[0] for p in ref["val_trace"]] == [4, 8, 10]
    assert [p[0] for p in rec["val_trace"]] == [4, 8, 10]
    assert rec["val_trace"] == ref["val_trace"]
    assert rec["resumed_from_step"] == from_step and rec["attempt"] == 2
    assert rec["cases"] == ref["cases"] and rec["lr_trace"] == ref["lr_trace"]
