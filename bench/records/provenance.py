"""Where a number came from: package versions, git commit, device, host."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "segbench",
    "torch",
    "lightning",
    "torchmetrics",
    "monai",
    "numpy",
    "scipy",
    "scikit-image",
    "connected-components-3d",
    "optuna",
    "wandb",
    "torch-geometric",
    "mambapy",
)


def package_versions() -> dict[str, str | None]:
    """Installed version of each package that can change a result (None when absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# Generated outputs that sweeps write into a checkout: changing them does not change the code.
GENERATED_PATHS = ("results", "leaderboard.md")


@lru_cache(maxsize=4)
def git_state(src: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the segbench source tree (None outside a git checkout).

    ``dirty`` is about the code: tracked files changed outside :data:`GENERATED_PATHS`. A sweep
    that replaces a record in the checkout's own ``results/`` leaves its later runs clean.
    """
    src = src or Path(__file__).resolve().parents[2]  # the checkout (or the folder holding bench/)

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip()

    sha = git("rev-parse", "HEAD")
    top = git("rev-parse", "--show-toplevel")
    excluded = [f":(exclude,top){p}" for p in GENERATED_PATHS] if top else []
    status = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", *excluded)
    return {"commit": sha, "dirty": bool(status) if status is not None else None}


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity mask where the platform has one
    (``taskset``, a SLURM or container CPU set), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


SIDE_BY_SIDE_ENV = "SEGBENCH_SIDE_BY_SIDE"
"""How many ``segbench run`` processes ``--side-by-side`` started together (this one included);
set by the command for itself and its children, read by :func:`device_info`."""


def side_by_side() -> int:
    """``$SEGBENCH_SIDE_BY_SIDE`` as a count (1 when unset or not a positive integer)."""
    try:
        return max(1, int(os.environ.get(SIDE_BY_SIDE_ENV, "1")))
    except ValueError:
        return 1


def device_info(accelerator: str = "cpu") -> dict[str, Any]:
    """What the run executes on: ``cpu_count`` is the machine's cores this process may use,
    ``torch_threads`` the intra-op threads torch computes with when this is called (the runner
    calls it after setting them, :mod:`bench.run.threads`; schema 3; schema-2 records named
    torch's thread count ``cpu_count``, see :attr:`bench.records.Record.torch_threads`), and
    ``side_by_side`` the number of runner processes ``segbench run --side-by-side`` started
    together on this machine, this one included (more than 1: they shared its cores or its GPU,
    so a time measured among them is not a time measured alone)."""
    import torch  # here: reading records (the leaderboard, `segbench status`) needs no torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "accelerator": accelerator,
        "side_by_side": side_by_side(),
    }
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info
