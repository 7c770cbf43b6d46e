"""Quiet by default: segbench's runs drop Lightning's known-benign messages (and only those), print
no ``srun`` hint on a machine with SLURM installed, and write plain progress lines to a log file."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import yaml

from bench.run.quiet import BENIGN, SRUN_HINT, quiet_run
from tests.conftest import REPO, tiny_sweep_dict

# What Lightning printed in every run before (and a machine with `srun` on PATH added the hint).
BENIGN_TEXT = (
    "💡 Tip",
    "LeafSpec",
    "weights_only",
    "limit_val_batches",
    "The `srun` command is available",
    "GPU available",
    "`Trainer.fit` stopped",
)

# A run that also warns something segbench does not know, and logs an unknown Lightning info line.
_RUN_WITH_UNKNOWN_MESSAGES = """
import sys, warnings
from lightning.pytorch.utilities import rank_zero_info
from models.module import SegmentationModule

def on_train_start(self):
    warnings.warn("segbench-test: an unknown warning", UserWarning, stacklevel=1)
    rank_zero_info("segbench-test: an unknown Lightning info line")

SegmentationModule.on_train_start = on_train_start
from bench.cli.app import main
sys.exit(main(sys.argv[1:]))
"""


def _fake_srun(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine with SLURM's client installed: an ``srun`` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "PYTHONPATH": str(REPO)}


def test_the_fake_srun_makes_a_bare_lightning_trainer_print_the_hint(tmp_path):
    """The reproduction itself: without segbench's measures Lightning prints the hint."""
    code = "import lightning as L; L.Trainer(accelerator='cpu', logger=False, enable_progress_bar=False)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=_fake_srun(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "The `srun` command is available" in out.stderr


def test_a_run_prints_no_benign_message_but_unknown_ones_and_plain_progress(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep_dict()))
    script = tmp_path / "run.py"
    script.write_text(_RUN_WITH_UNKNOWN_MESSAGES)
    results = tmp_path / "r"
    cmd = [sys.executable, str(script), "run", str(sweep), "--results", str(results), "--no-leaderboard"]
    # bytes, not text=True: universal newlines would turn a bar's carriage returns into newlines
    out = subprocess.run(cmd, env=_fake_srun(tmp_path), capture_output=True, timeout=600)
    stdout, stderr = out.stdout.decode(), out.stderr.decode()
    assert out.returncode == 0, stdout + stderr
    text = stdout + stderr
    for benign in BENIGN_TEXT:
        assert benign not in text, f"{benign!r} printed:\n{text}"
    assert "segbench-test: an unknown warning" in stderr  # anything else still shows
    assert "segbench-test: an unknown Lightning info line" in stderr
    # stdout and stderr are pipes here, as in a log file: no carriage-return bars, plain lines
    assert "\r" not in text, text
    (run_id,) = [p.stem for p in results.glob("*.json")]
    assert f"[1/1] {run_id}: started\n" in stderr
    assert f"[1/1] {run_id}: done in " in stderr


def test_quiet_run_drops_only_the_listed_warnings_and_only_inside():
    benign = "`isinstance(treespec, LeafSpec)` is deprecated, use ..."
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_run((*BENIGN, SRUN_HINT)):
            warnings.warn(benign, FutureWarning, stacklevel=1)
            warnings.warn("The `srun` command is available on your system but is not used.", stacklevel=1)
            warnings.warn("an unknown warning", UserWarning, stacklevel=1)
        warnings.warn(benign, FutureWarning, stacklevel=1)  # outside the block: shown again
    assert [str(w.message) for w in seen] == ["an unknown warning", benign]


def test_quiet_run_drops_only_the_listed_lightning_log_lines():
    import lightning  # noqa: F401 - creates Lightning's loggers

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    try:
        with quiet_run():
            logger.info("💡 Tip: For seamless cloud logging ...")
            logger.info("GPU available: False, used: False")
            logger.info("`Trainer.fit` stopped: `max_steps=2` reached.")
            logger.info("an unknown info line")
        logger.info("💡 Tip: shown outside a run")
    finally:
        logger.removeHandler(handler)
    assert records == ["an unknown info line", "💡 Tip: shown outside a run"]


def test_every_filter_says_why():
    for f in (*BENIGN, SRUN_HINT):
        assert f.kind in ("warning", "log") and len(f.reason) > 20, f.name


def test_local_runs_get_a_lightning_environment_and_slurm_job_steps_do_not(monkeypatch):
    from lightning.fabric.plugins.environments import LightningEnvironment

    from bench.run.build import cluster_plugins

    for key in [k for k in os.environ if k.startswith(("SLURM_", "TORCHELASTIC_", "LSB_", "OMPI_", "PMI_"))]:
        monkeypatch.delenv(key)
    assert [type(p) for p in cluster_plugins()] == [LightningEnvironment]
    monkeypatch.setenv("SLURM_NTASKS", "1")  # inside a job step (`--executor slurm`): Lightning detects it
    monkeypatch.setenv("SLURM_JOB_NAME", "segbench")
    assert cluster_plugins() == []
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # an salloc shell: local, as Lightning sees it
    assert [type(p) for p in cluster_plugins()] == [LightningEnvironment]


# One message of each filter, as Lightning (2.6) prints it.
_SAMPLES = {
    "lightning_tip": "💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels](...)",
    "pytree_deprecation": "`isinstance(treespec, LeafSpec)` is deprecated, use ...",
    "budget_reached": "`Trainer.fit` stopped: `max_steps=2` reached.",
    "short_epoch_logging": "The number of training batches (4) is smaller than the logging interval "
    "Trainer(log_every_n_steps=10). Set a lower value for log_every_n_steps ...",
    "mid_epoch_resume": "You're resuming from a checkpoint that ended before the epoch ended and your "
    "dataloader is not resumable. This can cause unreliable results ...",
    "device_summary": "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]",
    "srun_hint": "The `srun` command is available on your system but is not used. HINT: ...",
}


def test_every_filter_matches_the_message_it_names():
    import re

    filters = {f.name: f for f in (*BENIGN, SRUN_HINT)}
    assert set(filters) == set(_SAMPLES)
    for name, message in _SAMPLES.items():
        assert re.match(filters[name].start, message), name
    assert not any(re.match(f.start, "GPU available but not used.") for f in filters.values())
