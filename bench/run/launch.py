"""Multi-process runs that segbench starts itself (Lightning's ``ddp`` strategy).

Lightning's ``ddp`` strategy re-runs the launching command once per extra rank, so every rank
must execute exactly the same code. :func:`bench.run.run_one` therefore runs such a run in a
fresh ``python -m bench.run.rank JOB.json --results DIR`` process (:func:`run_launched`) whose only
job is that one run; the same command is the entry point for multi-node runs started by an
external launcher (torchrun, SLURM). See ``docs/sweeps.md``.

This module only starts processes and reads what they wrote: it imports nothing of the runner
(the launched rank's entry point is :mod:`bench.run.rank`).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.config import RunConfig, TrackingConfig, TrainerConfig
from bench.records import Record, now, read_record, record_path, write_json_atomic, write_record

SPAWN_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook")
_SEVERAL = 2  # stands for "more than one device" when devices is -1 / "auto"


def global_rank(trainer: TrainerConfig) -> int:
    """This process's global rank before the Trainer exists (0 outside distributed runs).

    ``RANK`` / ``SLURM_PROCID`` when a launcher sets them, else ``NODE_RANK * devices + LOCAL_RANK``
    (what Lightning's launcher sets for the ranks it starts).
    """
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    node = int(os.environ.get("NODE_RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return node * device_count(trainer.devices) + local


def device_count(devices: int | str) -> int:
    """How many devices ``trainer.devices`` names (2 stands for "several" with -1 / ``auto``)."""
    if isinstance(devices, int):
        return devices if devices > 0 else _SEVERAL
    if devices.isdigit():
        return int(devices)
    return len([d for d in devices.split(",") if d.strip()]) if "," in devices else _SEVERAL


def needs_launch(trainer: TrainerConfig) -> bool:
    """True when a run needs several processes that segbench starts itself (strategy ``ddp``).

    Lightning's ``ddp`` strategy re-runs the launching command once per extra rank, so every
    rank must execute exactly the same code. ``run_one`` therefore runs such a run in a fresh
    ``python -m bench.run.rank JOB`` process whose only job is that one run: its re-launched ranks
    mirror it, and the sweep process (which holds the run's claim) only waits. Already inside a
    launched rank (``SEGBENCH_LAUNCHED``, or ``LOCAL_RANK`` set by torchrun/SLURM) nothing is launched.
    """
    multi = trainer.num_nodes > 1 or device_count(trainer.devices) > 1
    launched = "SEGBENCH_LAUNCHED" in os.environ or "LOCAL_RANK" in os.environ
    ddp = trainer.strategy.startswith("ddp") and trainer.strategy not in SPAWN_STRATEGIES
    return multi and ddp and not launched


def run_launched(
    cfg: RunConfig,
    results: Path,
    *,
    tracking: TrackingConfig | None,
    progress: bool,
    extra: dict[str, Any] | None,
) -> Record:
    """Run ``cfg`` in ``python -m bench.run.rank JOB`` (Lightning re-launches it per rank); read its record.

    The job file ``<results>/.work/<run_id>/job.json`` holds ``{config, tracking, progress, extra}``.
    A process that ends without writing a new record gets a ``failed`` record naming its exit code.
    """
    work_dir = results / ".work" / cfg.run_id
    job = work_dir / "job.json"
    payload = {
        "config": cfg.to_dict(),
        "tracking": None if tracking is None else dataclasses.asdict(tracking),
        "progress": progress,
        "extra": extra or {},
    }
    write_json_atomic(job, payload)
    before = read_record(record_path(results, cfg.run_id))
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK")}
    env["SEGBENCH_LAUNCHED"] = "1"
    root = str(Path(__file__).resolve().parents[2])  # `bench` importable from any working folder
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run.rank", str(job.resolve()), "--results", str(results.resolve())],
        env=env,
        check=False,
    )
    record = read_record(record_path(results, cfg.run_id))
    if record is not None and record != before:
        return Record.from_dict(record)
    failed = Record.train(
        cfg.run_id,
        config_hash=cfg.config_hash,
        config=cfg.to_dict(),
        status="failed",
        error=f"distributed run process exited with code {proc.returncode} without a record",
        finished_at=now(),
        **(extra or {}),
    )
    write_record(results, failed)
    return failed
