"""Fixtures shared by every test area: isolated caches, offline tracking, a tiny sweep."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

# Tiny test tensors run fastest on one thread, and several pytest processes or subprocesses
# sharing two cores must not oversubscribe them (OpenMP spinning costs 10-20x here). Runs set
# their own threads (bench.run.threads): SEGBENCH_THREADS keeps them, and the subprocesses the
# tests start, at one; tests of the thread choice remove it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("SEGBENCH_THREADS", "1")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _isolated_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Split files, wandb runs and caches go to a temp folder; nothing tries the network."""
    root = tmp_path_factory.mktemp("segbench-env")
    os.environ.setdefault("SEGBENCH_CACHE", str(root / "cache"))
    os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_DIR", str(root / "wandb"))
    os.environ.setdefault("WANDB_SILENT", "true")


TINY_3D_DATASET: dict[str, Any] = {
    "name": "synthetic_vessels_3d",
    "size": [16, 16, 16],
    "num_train": 2,
    "num_val": 1,
    "num_test": 1,
}
"""A 16³ synthetic 3D dataset of 2 training, 1 validation and 1 test case (a sweep's ``datasets`` entry)."""


def tiny_sweep_dict(**updates: Any) -> dict[str, Any]:
    """A sweep that trains a 3-level U-Net for a few steps on 64×64 synthetic vessels."""
    sweep: dict[str, Any] = {
        "name": "tiny",
        "datasets": [
            {"name": "synthetic_vessels", "size": [64, 64], "num_train": 4, "num_val": 2, "num_test": 2}
        ],
        "models": [{"name": "unet", "channels": [4, 8, 16]}],
        "losses": ["dice_ce"],
        "seeds": [0],
        "trainer": {"max_steps": 2, "log_every_n_steps": 1},
        "data": {"batch_size": 2, "patch_size": [32, 32], "samples_per_epoch": 4},
        "eval": {"sw_batch_size": 4, "betti_patch": 32},
    }
    sweep.update(updates)
    return sweep


@pytest.fixture
def tiny_sweep() -> dict[str, Any]:
    return tiny_sweep_dict()


def run_cli_workers(args: list[str], n: int = 2, timeout: float = 600) -> list[str]:
    """Start ``n`` concurrent ``python -m bench.cli ARGS`` processes from the repository root,
    wait for all, assert each exited 0, and return their combined stdout+stderr."""
    cmd = [sys.executable, "-m", "bench.cli", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(n)
    ]
    outputs = [w.communicate(timeout=timeout)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * n, outputs
    return outputs
