"""Executing runs: sweep -> claimed runs -> records.

:func:`execute_run` fits a built run (resuming from its checkpoint if there is one), tests it,
evaluates every test case and fills the record; :func:`run_one` builds, executes and writes one
record atomically; :func:`run_claimed` does so under the run's claim; :func:`run_sweep` does it
for every run of a sweep. A run that raises is recorded as failed and the sweep goes on; a done
record is skipped on the next invocation; a run that died mid-fit resumes from its last
checkpoint (model, optimiser, scheduler, loop and RNG state). Multi-process ``ddp`` runs are
started through :mod:`bench.run.launch`. A run computes with the threads that fit the machine
(:mod:`bench.run.threads`), drops Lightning's known-benign messages (:mod:`bench.run.quiet`) and
shows its progress through the sweep's one display (:mod:`bench.run.progress`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import ConfigError, RunConfig, SweepConfig, TrackingConfig
from bench.faults import fault_point
from bench.metrics import reduce_cases
from bench.records import (
    Record,
    claim,
    clean_stale_temp,
    is_done,
    now,
    supersede,
    write_json_atomic,
    write_record,
)
from bench.records.provenance import device_info
from bench.records.record import MODEL_CONFIG, MODELS, WEIGHTS_FILE
from bench.records.weights import save_weights
from bench.run.build import BuiltRun, build_run, launched_by_cluster
from bench.run.launch import SPAWN_STRATEGIES, global_rank, needs_launch, run_launched
from bench.run.memory import PeakMemory
from bench.run.plan import datamodule_kwargs, plan_sweep, resolve_run
from bench.run.progress import Progress
from bench.run.quiet import BENIGN, SRUN_HINT, quiet_run
from bench.run.threads import run_threads
from datamodules.download import file_digest
from models import count_parameters


def execute_run(run: BuiltRun, record: Record) -> Record:
    """Fit (resuming from the checkpoint if there is one), test, evaluate; fill and return ``record``."""
    dm, module, trainer = run.datamodule, run.module, run.trainer
    record.config = run.resolved.to_dict()
    record.params = count_parameters(module.net)
    record.resumed_from_step = run.resume_step
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(run.checkpoint) if run.resume_step is not None else None)
    record.train_seconds = run.clock.total(time.perf_counter() - start, resumed=run.resume_step is not None)
    record.steps = trainer.global_step
    record.epochs = trainer.current_epoch
    record.lr_trace = run.lr_trace.trace
    record.val_trace = run.val_trace.trace
    record.schedule_steps = module.schedule_steps
    fault_point("before_test")
    start = time.perf_counter()
    trainer.test(module, datamodule=dm, verbose=False)
    record.test_seconds = time.perf_counter() - start
    record.infer_seconds = module.infer_seconds
    record.world_size = trainer.world_size
    record.split = dm.split_info()
    record.cases = run.metrics.rows
    if run.metrics.curves:  # an interactive run's Dice after each click, per test case
        record.extra["dice_per_click"] = run.metrics.curves
    record.aggregates = reduce_cases(run.metrics.rows)
    record.predictions = run.metrics.saved
    if run.metrics.degenerate:  # written only when more than half of the test predictions are constant
        record.degenerate = run.metrics.degenerate
    return record


def keep_model(run: BuiltRun, results: Path, record: Record) -> None:
    """Keep the trained network of a done run: ``<results>/models/<run_id>/model.safetensors`` (the
    network's ``state_dict``, no optimiser state) and ``config.json`` (the run id, the resolved
    config as the record states it, the DataModule's arguments and what the data held: the
    dimensions, channels and classes), each written atomically; ``record.weights`` names the file
    (relative to ``results``), its sha256 and size. Does nothing with ``eval.keep_model: none``.
    """
    if run.resolved.eval.keep_model != "final":
        return
    folder = results / MODELS / run.cfg.run_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WEIGHTS_FILE
    tmp = folder / f".{WEIGHTS_FILE}.{os.getpid()}.tmp"
    save_weights(run.module.net, tmp, metadata={"run_id": run.cfg.run_id, "format": "pt"})
    os.replace(tmp, path)
    dm = run.datamodule
    data = {k: record.split.get(k) for k in ("spatial_dims", "in_channels", "channel_names", "class_names")}
    data["num_classes"] = int(dm.num_classes)
    write_json_atomic(
        folder / MODEL_CONFIG,
        {
            "run_id": run.cfg.run_id,
            "config": record.config,
            "datamodule": json.loads(json.dumps(datamodule_kwargs(run.resolved), default=str)),
            "data": data,
            "weights": WEIGHTS_FILE,
        },
    )
    record.weights = {
        "file": str(path.relative_to(results)),
        "sha256": file_digest(path),
        "bytes": path.stat().st_size,
    }


def _count_start(work_dir: Path) -> int:
    """Append this start to ``work_dir/starts.log``; returns how many times the run started."""
    path = work_dir / "starts.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "at": now()}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return len(path.read_text().splitlines())


def _track(run: BuiltRun, record: Record) -> None:
    """Log a finished run to its tracker; a tracker's failure is noted, never fails the run."""
    from bench.run.tracking import log_record

    try:
        log_record(run.wandb_logger, record, run.metrics.examples)
    except Exception as exc:  # noqa: BLE001 - tracking must not fail a finished run
        record.tracking_error = f"{type(exc).__name__}: {exc}"


def run_one(
    cfg: RunConfig,
    results: Path,
    *,
    tracking: TrackingConfig | None = None,
    progress: bool | Progress = True,
    extra: dict[str, Any] | None = None,
) -> Record:
    """Run one configuration and write its record. Returns the record (status done or failed).

    ``extra``: further top-level keys of the record (a tuned run's ``study``, ``trial`` ...).
    ``progress``: show the run's progress (``True``: a display of its own; a
    :class:`~bench.run.progress.Progress`: the sweep's). Under DDP every rank trains and
    evaluates its share of the test cases; the per-case rows are gathered once
    (:class:`~bench.run.callbacks.CaseMetricsCallback`) and only global rank 0 writes the record.
    Multi-process ``ddp`` runs are executed in a child process (:func:`~bench.run.launch.needs_launch`).

    Raises:
        ValueError: ``$SEGBENCH_THREADS`` is not an integer >= 1 (before anything runs).
    """
    results = Path(results)
    resolved = resolve_run(cfg)
    if needs_launch(resolved.trainer):
        return run_launched(cfg, results, tracking=tracking, progress=bool(progress), extra=extra)
    benign = BENIGN if launched_by_cluster() else (*BENIGN, SRUN_HINT)
    with run_threads(resolved), quiet_run(benign):
        return _run_here(cfg, results, tracking=tracking, progress=progress, extra=extra)


def _run_here(
    cfg: RunConfig,
    results: Path,
    *,
    tracking: TrackingConfig | None,
    progress: bool | Progress,
    extra: dict[str, Any] | None,
) -> Record:
    """:func:`run_one` in this process, with its threads set and the benign messages dropped."""
    work_dir = results / ".work" / cfg.run_id
    rank = global_rank(cfg.trainer)
    record = Record.train(
        cfg.run_id,
        config_hash=cfg.config_hash,
        config=cfg.to_dict(),
        attempt=_count_start(work_dir) if rank == 0 else None,
        device=device_info(cfg.trainer.accelerator),
        **(extra or {}),
    )
    run: BuiltRun | None = None
    memory = PeakMemory(cuda=cfg.trainer.accelerator != "cpu")
    display = None
    if progress and rank == 0:
        display = progress if isinstance(progress, Progress) else Progress()
        display.run_started(cfg.run_id)
    try:
        if cfg.trainer.strategy in SPAWN_STRATEGIES:
            raise ConfigError(
                f"trainer.strategy: {cfg.trainer.strategy!r} is not supported: spawned ranks cannot hand "
                "the per-case metrics back; use strategy: ddp"
            )
        memory.start()
        run = build_run(cfg, results, tracking=tracking, progress=display or False)
        execute_run(run, record)
        if run.trainer.is_global_zero:
            keep_model(run, results, record)
        memory.stop()
        record.memory = memory.result()
        record.status = "done"
        if run.wandb_logger is not None:
            _track(run, record)
    except Exception as exc:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
        record.status = "failed"
        record.error = f"{type(exc).__name__}: {exc}"
        record.traceback = traceback.format_exc()
    finally:
        memory.stop()
        if run is not None and run.wandb_logger is not None:
            from bench.run.tracking import finish

            finish(run.wandb_logger, failed=not record.done)
        if display is not None:
            display.run_ended(record.status, record.error)
    if run is not None:
        rank = run.trainer.global_rank
    if rank != 0:
        return record  # only global rank 0 writes the record
    record.finished_at = now()
    fault_point("record_write")
    write_record(results, record)
    if record.done:
        shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    return record


def run_claimed(
    cfg: RunConfig,
    results: Path,
    *,
    tracking: TrackingConfig | None = None,
    progress: bool | Progress = True,
    extra: dict[str, Any] | None = None,
    force: bool = False,
    reason: str = "re-run with --force",
) -> Record | None:
    """Run ``cfg`` unless it is done or claimed by another worker; returns the new record or None.

    The claim (an ``flock``) is held for the whole run and the done-check is repeated under it,
    so of several workers on one results folder exactly one executes the run. ``force``: run it
    even when done, moving the old record aside first (:func:`~bench.records.supersede`, with
    ``reason`` in its index).
    """
    results = Path(results)
    if is_done(results, cfg.run_id) and not force:
        return None
    held = claim(results, cfg.run_id)
    if held is None:
        return None
    with held:
        if is_done(results, cfg.run_id) and not force:
            return None
        if force:
            supersede(results, cfg.run_id, reason)
        return run_one(cfg, results, tracking=tracking, progress=progress, extra=extra)


def run_sweep(
    sweep: SweepConfig,
    results: Path,
    *,
    force: bool = False,
    progress: bool = True,
    runs: list[RunConfig] | None = None,
    reason: str = "re-run with --force",
    after_run: Callable[[RunConfig, bool], Any] | None = None,
) -> list[Record]:
    """Run every configuration of ``sweep`` not yet done; returns the records written now.

    ``runs``: the sweep's planned runs when the caller has them already (:func:`plan_sweep`).
    ``reason``: why done runs are re-run with ``force`` (kept in ``.superseded/index.jsonl``).
    ``progress``: one display for the whole sweep (:class:`~bench.run.progress.Progress`: a bar on
    a terminal, plain lines in a log file; each run that executes says when it starts and ends,
    a failed one with its error).
    Several processes may run the same sweep on one results folder: each run is claimed with
    an flock, so it is done exactly once; a dead worker's claim is released by the kernel.

    ``after_run``: called as ``after_run(cfg, fresh)`` for every run with ``eval.external`` once
    its record is written or found (``fresh``: the run was executed now), in this process; the
    runner layer cannot test on other datasets itself (that is ``bench.evaluate``), so the caller
    passes :func:`bench.evaluate.outside.external_evaluator` (``docs/external.md``).

    Raises:
        ConfigError: a run has ``eval.external`` and no ``after_run`` is given (before anything runs).
    """
    results = Path(results)
    runs = plan_sweep(sweep) if runs is None else runs
    if after_run is None and any(cfg.eval.external for cfg in runs):
        raise ConfigError(
            "eval.external: this caller does not test runs on external datasets; pass "
            "after_run=bench.evaluate.outside.external_evaluator(results) to run_sweep"
        )
    results.mkdir(parents=True, exist_ok=True)
    clean_stale_temp(results)  # half-written files of a worker that was killed
    written: list[Record] = []
    display = Progress(len(runs)) if progress else None
    try:
        for cfg in runs:
            if display is not None:
                display.next_run()
            record = run_claimed(
                cfg, results, tracking=sweep.tracking, progress=display or False, force=force, reason=reason
            )
            if after_run is not None and cfg.eval.external:
                after_run(cfg, record is not None)  # a run done before: only its missing tests
            if record is None:
                continue  # done already, or another worker has it
            written.append(record)
            if record.status == "failed" and display is None:  # the display says it otherwise
                print(f"run {cfg.run_id} failed: {record.error}", file=sys.stderr)
    finally:
        if display is not None:
            display.close()
    return written
