"""The house plan is held by import-linter: the contracts in pyproject.toml pass on the tree and fail
on a planted violation (a leaderboard module importing the runner, a model importing the config)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT)], cwd=root, env=env, capture_output=True, text=True)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for name in ("bench", "models", "datamodules"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.skipif(not LINT.exists(), reason="import-linter is installed by the test extra")
def test_the_contracts_hold_and_a_planted_violation_breaks_them(tree: Path):
    clean = _lint(tree)
    assert clean.returncode == 0, clean.stdout[-2000:]
    with open(tree / "bench" / "leaderboard" / "format.py", "a") as fh:
        fh.write("\nfrom bench.run import run_one  # planted\n")
    with open(tree / "models" / "unet.py", "a") as fh:
        fh.write("\nimport bench.config  # planted\n")
    broken = _lint(tree)
    assert broken.returncode == 1
    assert "bench.leaderboard.format -> bench.run" in broken.stdout
    assert "models.unet -> bench.config" in broken.stdout
    assert broken.stdout.count("BROKEN") == 3  # models rule, leaderboard rule, the layers
