"""The ready GPU script of the published-size family comparison, in its CPU dry mode: every run of
bench/sweeps/gpu_paper_families.yaml is planned (configs, presets, dataset checked), none trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_the_paper_families_script_plans_twelve_runs_on_a_cpu(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "SITE": str(tmp_path / "site"), "RESULTS": str(tmp_path)}
    done = subprocess.run(
        ["bash", "bench/perf/paper_families.sh", "--dry-run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    planned = [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("to run")]
    assert len(planned) == 12 and "12 run(s)" in done.stdout and "nothing trained" in done.stdout
    families = {rid.split("__")[1] for rid in planned}
    assert families == {"nnunet_resenc", "umamba_bot_resenc", "xlstm_bot_resenc", "swin_unetr"}
    assert not list(tmp_path.glob("*.json"))  # a dry run writes no record


def test_the_paper_families_sweep_builds_the_paper_sizes() -> None:
    from bench.config import load_sweep
    from bench.run.plan import resolve_run

    runs = [resolve_run(r) for r in load_sweep(REPO / "bench/sweeps/gpu_paper_families.yaml").expand()]
    presets = {r.model.name: r.model.kwargs.get("preset") for r in runs}
    assert presets == {
        "nnunet_resenc": "hippocampus",
        "umamba_bot_resenc": "hippocampus",
        "xlstm_bot_resenc": "hippocampus",
        "swin_unetr": "paper",
    }
    # the nnU-Net recipe is applied: SGD Nesterov 0.99, lr 0.01, weight decay 3e-5
    o = runs[0].optim
    assert (o.optimizer, o.momentum, o.lr, o.weight_decay) == ("sgd", 0.99, 0.01, 3e-5)
    assert {r.trainer.accelerator for r in runs} == {"gpu"} and {r.seed for r in runs} == {0, 1, 2}
