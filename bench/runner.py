"""Sweep -> runs -> records. One run: seed, build DataModule + model + Trainer, fit, test,
per-case metrics, one atomic JSON record. A run that raises is recorded as failed and the
sweep goes on; a done record is skipped on the next invocation (resume). Multi-process ``ddp``
runs are started through :mod:`bench.launch`."""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import socket
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from tqdm.auto import tqdm

from bench.callbacks import CaseMetricsCallback
from bench.config import RunConfig, SweepConfig, TrackingConfig
from bench.launch import SPAWN_STRATEGIES, global_rank, needs_launch, run_launched
from bench.memory import PeakMemory
from bench.provenance import device_info, git_state, package_versions
from bench.store import claim, is_done, read_record, record_path, write_json_atomic
from datamodules import create_datamodule, dataset_entry
from models import SegmentationModule, count_parameters, create_loss, create_model, model_entry


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_datamodule(cfg: RunConfig) -> L.LightningDataModule:
    """The run's DataModule: sweep-wide ``data`` settings, overridden by the dataset's kwargs."""
    d = cfg.data
    kwargs: dict[str, Any] = {
        "batch_size": d.batch_size,
        "samples_per_epoch": d.samples_per_epoch,
        "fg_oversample": d.fg_oversample,
        "augment": d.augment,
        "num_workers": d.num_workers,
        "num_folds": d.num_folds,
        "split_seed": d.split_seed,
        "fold": cfg.fold,
    }
    if d.patch_size is not None:
        kwargs["patch_size"] = d.patch_size
    kwargs.update(cfg.dataset.kwargs)
    cls = dataset_entry(cfg.dataset.name).factory
    if kwargs.get("patch_size") is not None and len(kwargs["patch_size"]) != cls.spatial_dims:
        kwargs["patch_size"] = None  # a 2D sweep-wide patch does not apply to a 3D dataset
    return create_datamodule(cfg.dataset.name, **kwargs)


def build_module(cfg: RunConfig, dm: Any) -> SegmentationModule:
    """Network + loss + optimiser settings for ``dm``'s dimensions and classes."""
    model_kwargs = dict(cfg.model.kwargs)
    params = inspect.signature(model_entry(cfg.model.name).factory).parameters
    if "img_size" in params and "img_size" not in model_kwargs:
        model_kwargs["img_size"] = tuple(dm.patch_size)  # e.g. UNETR's fixed input size
    net = create_model(
        cfg.model.name,
        spatial_dims=dm.spatial_dims,
        in_channels=dm.in_channels,
        out_channels=dm.num_classes,
        **model_kwargs,
    )
    o = cfg.optim
    return SegmentationModule(
        net,
        create_loss(cfg.loss.name, **cfg.loss.kwargs),
        num_classes=dm.num_classes,
        roi_size=dm.patch_size,
        optimizer=o.optimizer,
        lr=o.lr,
        weight_decay=o.weight_decay,
        momentum=o.momentum,
        scheduler=o.scheduler,
        max_steps=cfg.trainer.max_steps,
        warmup_steps=o.warmup_steps,
        sw_batch_size=cfg.eval.sw_batch_size,
        sw_overlap=cfg.eval.sw_overlap,
    )


def build_trainer(
    cfg: RunConfig, work_dir: Path, callbacks: list[L.Callback], loggers: list[Any], progress: bool
) -> L.Trainer:
    """A Lightning Trainer from ``cfg.trainer``; checkpoints every validation for resume."""
    t = cfg.trainer
    ckpt = ModelCheckpoint(dirpath=work_dir / "checkpoints", save_last=True, save_top_k=0)
    return L.Trainer(
        max_steps=t.max_steps,
        max_epochs=t.max_epochs,
        val_check_interval=t.val_check_interval,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        limit_val_batches=t.limit_val_batches,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=t.precision,
        gradient_clip_val=t.gradient_clip_val,
        deterministic=t.deterministic,
        log_every_n_steps=t.log_every_n_steps,
        default_root_dir=work_dir,
        callbacks=[*callbacks, ckpt],
        logger=loggers,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def aggregate(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, std, median, count and NaN count of every numeric per-case metric."""
    keys = [k for k in (rows[0] if rows else {}) if k != "case_id"]
    out = {}
    for k in keys:
        values = np.array([r.get(k, math.nan) for r in rows], dtype=float)
        finite = values[np.isfinite(values)]
        out[k] = {
            "mean": float(finite.mean()) if finite.size else math.nan,
            "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0 if finite.size else math.nan,
            "median": float(np.median(finite)) if finite.size else math.nan,
            "n": int(finite.size),
            "n_nan": int(values.size - finite.size),
        }
    return out


def _count_start(work_dir: Path) -> int:
    """Append this start to ``work_dir/starts.log``; returns how many times the run started."""
    path = work_dir / "starts.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "at": _now()}) + "\n")
    return len(path.read_text().splitlines())


def run_one(
    cfg: RunConfig,
    results: Path,
    *,
    tracking: TrackingConfig | None = None,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one configuration and write its record. Returns the record (status done or failed).

    Under DDP every rank trains and evaluates its share of the test cases; the per-case rows
    are gathered once (:class:`CaseMetricsCallback`) and only global rank 0 writes the record.
    Multi-process ``ddp`` runs are executed in a child process (see :func:`needs_launch`).
    """
    results = Path(results)
    if needs_launch(cfg.trainer):
        return run_launched(cfg, results, tracking=tracking, progress=progress, extra=extra)
    work_dir = results / ".work" / cfg.run_id
    rank = global_rank(cfg.trainer)
    record: dict[str, Any] = {
        "schema": 1,
        "run_id": cfg.run_id,
        "config_hash": cfg.config_hash,
        "config": cfg.to_dict(),
        "status": "running",
        "started_at": _now(),
        "attempt": _count_start(work_dir) if rank == 0 else None,
        "worker": {"pid": os.getpid(), "host": socket.gethostname()},
        "git": git_state(),
        "versions": package_versions(),
        "device": device_info(cfg.trainer.accelerator),
        **(extra or {}),
    }
    wandb_logger = None
    trainer = None
    memory = PeakMemory(cuda=cfg.trainer.accelerator != "cpu")
    try:
        if cfg.trainer.strategy in SPAWN_STRATEGIES:
            raise ValueError(
                f"strategy {cfg.trainer.strategy!r} is not supported: spawned ranks cannot hand the "
                "per-case metrics back; use strategy: ddp"
            )
        memory.start()
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = build_datamodule(cfg)
        dm.setup("fit")
        module = build_module(cfg, dm)
        record["params"] = count_parameters(module.net)
        record["split"] = dm.split_info()
        wandb_on = tracking is not None and tracking.wandb
        metrics_cb = CaseMetricsCallback(
            betti_patch=cfg.eval.betti_patch,
            nsd_tolerance=cfg.eval.nsd_tolerance,
            examples=tracking.log_images if wandb_on else 0,
        )
        loggers: list[Any] = [CSVLogger(work_dir, name="csv", version="")]
        if wandb_on and rank == 0:
            from bench.tracking import wandb_logger as make_wandb_logger

            wandb_logger = make_wandb_logger(cfg, tracking, work_dir)
            loggers.append(wandb_logger)
        trainer = build_trainer(cfg, work_dir, [metrics_cb], loggers, progress)
        last = work_dir / "checkpoints" / "last.ckpt"
        start = time.perf_counter()
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if last.exists() else None)
        record["train_seconds"] = time.perf_counter() - start
        record["resumed_from_checkpoint"] = last.exists()
        start = time.perf_counter()
        trainer.test(module, datamodule=dm, verbose=False)
        record["test_seconds"] = time.perf_counter() - start
        record["infer_seconds"] = module.infer_seconds
        record["steps"] = trainer.global_step
        record["world_size"] = trainer.world_size
        record["cases"] = metrics_cb.rows
        record["aggregates"] = aggregate(metrics_cb.rows)
        memory.stop()
        record["memory"] = memory.result()
        record["status"] = "done"
        if wandb_logger is not None:
            from bench.tracking import log_record

            try:
                log_record(wandb_logger, record, metrics_cb.examples)
            except Exception as exc:  # noqa: BLE001 - tracking must not fail a finished run
                record["tracking_error"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
    finally:
        memory.stop()
        if wandb_logger is not None:
            from bench.tracking import finish

            finish(wandb_logger, failed=record["status"] != "done")
    if trainer is not None:
        rank = trainer.global_rank
    if rank != 0:
        return record  # only global rank 0 writes the record
    record["finished_at"] = _now()
    write_json_atomic(record_path(results, cfg.run_id), record)
    if record["status"] == "done":
        shutil.rmtree(work_dir / "checkpoints", ignore_errors=True)
    return record


def _supersede(results: Path, run_id: str) -> None:
    """Move an existing record aside (``.superseded/``) before a forced re-run."""
    path = record_path(results, run_id)
    old = read_record(path)
    if old is None:
        return
    stamp = str(old.get("finished_at", "unknown")).replace(":", "")
    dest = results / ".superseded" / f"{run_id}__{stamp}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    path.replace(dest)
    shutil.rmtree(results / ".work" / run_id, ignore_errors=True)


def run_claimed(
    cfg: RunConfig,
    results: Path,
    *,
    tracking: TrackingConfig | None = None,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any] | None:
    """Run ``cfg`` unless it is done or claimed by another worker; returns the new record or None.

    The claim (an ``flock``) is held for the whole run and the done-check is repeated under it,
    so of several workers on one results folder exactly one executes the run.
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
            _supersede(results, cfg.run_id)
        return run_one(cfg, results, tracking=tracking, progress=progress, extra=extra)


def run_sweep(
    sweep: SweepConfig,
    results: Path,
    *,
    force: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every configuration of ``sweep`` not yet done; returns the records written now.

    Several processes may run the same sweep on one results folder: each run is claimed with
    an flock, so it is done exactly once; a dead worker's claim is released by the kernel.
    """
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    runs = sweep.expand()
    written: list[dict[str, Any]] = []
    bar = tqdm(runs, desc=f"sweep {sweep.name}", unit="run", disable=not progress, position=0)
    for cfg in bar:
        bar.set_postfix_str(cfg.run_id[:60])
        record = run_claimed(cfg, results, tracking=sweep.tracking, progress=progress, force=force)
        if record is None:
            continue  # done already, or another worker has it
        written.append(record)
        if record["status"] == "failed":
            tqdm.write(f"run {cfg.run_id} failed: {record['error']}")
    return written
