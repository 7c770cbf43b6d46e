"""SIGTERM / Ctrl-C stop a sweep with one line and lose nothing: no record of the interrupted
run, no half-written file, and the same command resumes it from its last checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_sweep_dict


def _default_signals() -> None:
    """In the child: SIGINT / SIGTERM at their defaults. A suite started in the background by a shell
    without job control inherits SIGINT ignored, and segbench (rightly) keeps an ignored SIGINT
    ignored; the test is about a terminal's Ctrl-C, so it starts the command as a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_fit_stops_cleanly_and_the_run_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    sweep = tiny_sweep_dict(trainer={"max_steps": 400, "checkpoint_every_n_steps": 5, "log_every_n_steps": 1})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    results = tmp_path / "r"
    cmd = [sys.executable, "-m", "bench.cli", "run", str(path), "--results", str(results), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SEGBENCH_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals
    )
    deadline = time.monotonic() + 240
    while not list(results.glob(".work/*/checkpoints/*.ckpt")):  # training has written a checkpoint
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + int(sig), (out, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith("segbench run: interrupted (") and "resumes the rest" in last, err
    assert "Traceback" not in err
    assert not list(results.glob("*.json"))  # no record claims the run happened (nor failed)
    assert not list(results.rglob("*.tmp"))
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    import json

    (record,) = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert record["status"] == "done" and (record["resumed_from_step"] or 0) >= 5, record["resumed_from_step"]
