"""Sweep -> runs -> records.

A run has two halves: :func:`build_run` turns a ``RunConfig`` into the objects that execute it
(DataModule, LightningModule, Trainer, callbacks, the resolved config) and :func:`execute_run`
fits, tests, evaluates every test case and returns the record. :func:`run_one` joins them and
writes the record atomically. A run that raises is recorded as failed and the sweep goes on; a
done record is skipped on the next invocation; a run that died mid-fit resumes from its last
checkpoint (model, optimiser, scheduler, loop and RNG state). Before anything trains,
:func:`plan_sweep` validates every run of a sweep against the registries, so a typo costs seconds.
Multi-process ``ddp`` runs are started through :mod:`bench.launch`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from tqdm.auto import tqdm

from bench.callbacks import CaseMetricsCallback, LRTraceCallback, ResumeCheckpoint
from bench.config import (
    ComponentSpec,
    ConfigError,
    DataConfig,
    RunConfig,
    SweepConfig,
    TrackingConfig,
    TrainerConfig,
)
from bench.faults import fault_point
from bench.launch import SPAWN_STRATEGIES, device_count, global_rank, needs_launch, run_launched
from bench.memory import PeakMemory
from bench.metrics import reduce_cases
from bench.provenance import device_info
from bench.store import (
    claim,
    clean_stale_temp,
    is_done,
    new_record,
    now,
    read_record,
    record_path,
    write_json_atomic,
)
from datamodules import create_datamodule, dataset_entry
from models import SegmentationModule, count_parameters, create_loss, create_model, model_entry
from models.registry import SEGBENCH_MODEL_OPTIONS, check_kwargs, loss_dims, loss_targets

# TrainerConfig fields that are segbench's own, not ``lightning.Trainer`` arguments.
_NOT_TRAINER_ARGS = ("checkpoint_every_n_steps",)
# DataModule arguments the runner sets from the run itself (not from ``data`` or dataset kwargs).
_RUN_DATA_ARGS = ("fold", "seed", "multi_rater")


# ---- resolution and validation (no disk access) -----------------------------------------------


def _datamodule_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """Sweep-wide ``data`` settings overridden by the dataset entry's kwargs, plus the run's own."""
    d = cfg.data
    kwargs: dict[str, Any] = {
        f.name: getattr(d, f.name) for f in dataclasses.fields(DataConfig) if getattr(d, f.name) is not None
    }
    kwargs.update(cfg.dataset.kwargs)
    kwargs.update(fold=cfg.fold, seed=cfg.seed)
    if loss_targets(cfg.loss.name) == "raters":
        kwargs["multi_rater"] = True
    return kwargs


def resolve_run(cfg: RunConfig) -> RunConfig:
    """The config as it will actually be used: defaults that depend on the dataset or model filled in.

    - ``data.patch_size``: the dataset's ``default_patch_size`` when not given;
    - ``model.kwargs.img_size``: the patch size, for models registered with ``fixed_input_size``;
    - ``trainer.strategy``: ``ddp`` for several devices or nodes with ``strategy: auto`` (the
      launch path segbench has; Lightning's own re-launch of the CLI would hang the sweep).

    Raises:
        ConfigError: a ``patch_size`` whose length is not the dataset's number of dimensions.
    """
    cls = dataset_entry(cfg.dataset.name).factory
    dims = int(cls.spatial_dims)
    patch = cfg.dataset.kwargs.get("patch_size", cfg.data.patch_size)
    where = "datasets[].patch_size" if "patch_size" in cfg.dataset.kwargs else "data.patch_size"
    if patch is None:
        patch = tuple(cls.default_patch_size)
    patch = tuple(int(p) for p in patch)
    if len(patch) != dims:
        raise ConfigError(
            f"{where}: {list(patch)} has {len(patch)} entries but dataset {cfg.dataset.name!r} is {dims}D; "
            f"give the patch size per dataset ({{name: {cfg.dataset.name}, patch_size: [...]}})"
        )
    dataset_kwargs = {k: v for k, v in cfg.dataset.kwargs.items() if k != "patch_size"}
    model_kwargs = dict(cfg.model.kwargs)
    meta = model_entry(cfg.model.name).meta
    if meta.get("fixed_input_size") and "img_size" not in model_kwargs:
        model_kwargs["img_size"] = list(patch)
    t = cfg.trainer
    multi = t.num_nodes > 1 or device_count(t.devices) > 1
    trainer = dataclasses.replace(t, strategy="ddp") if multi and t.strategy == "auto" else t
    return dataclasses.replace(
        cfg,
        dataset=ComponentSpec(cfg.dataset.name, dataset_kwargs),
        model=ComponentSpec(cfg.model.name, model_kwargs),
        data=dataclasses.replace(cfg.data, patch_size=patch),
        trainer=trainer,
    )


def check_run(cfg: RunConfig) -> None:
    """Validate one run against the registries before anything is built.

    Checks names, that every model / loss / dataset keyword is accepted by that component, that
    the model and every loss term support the dataset's dimensions, and the DataModule's own
    argument rules. Raises ``ValueError`` (``KeyError`` for unknown names) naming the field.
    """
    entry = dataset_entry(cfg.dataset.name)
    cls = entry.factory
    dims = int(cls.spatial_dims)
    m = model_entry(cfg.model.name)
    two_half = cfg.model.kwargs.get("input_mode") == "2.5d"
    if two_half and (dims != 3 or 2 not in m.meta["dims"]):
        raise ConfigError(f"models: {cfg.model.name!r}: input_mode 2.5d needs a 2D model on a 3D dataset")
    if not two_half and dims not in m.meta["dims"]:
        raise ConfigError(
            f"models: {cfg.model.name!r} supports {'/'.join(f'{d}D' for d in m.meta['dims'])}, "
            f"but dataset {cfg.dataset.name!r} is {dims}D"
        )
    reserved = ("spatial_dims", "in_channels", "out_channels")
    for key in cfg.model.kwargs:
        if key in reserved:
            raise ConfigError(f"models: {cfg.model.name!r}: {key!r} is set by segbench from the dataset")
    options = [k for k in cfg.model.kwargs if k not in SEGBENCH_MODEL_OPTIONS]
    path = cfg.model.kwargs.get("pretrained_encoder")
    if path is not None and not Path(str(path)).is_file():
        raise ConfigError(f"models: {cfg.model.name!r}: pretrained_encoder {path}: no such file")
    try:
        check_kwargs("model", cfg.model.name, m.factory, options, reserved)
    except ValueError as e:
        raise ConfigError(f"models: {e}") from None
    if dims not in loss_dims(cfg.loss.name):
        raise ConfigError(f"losses: {cfg.loss.name!r} is not defined for {dims}D data ({cfg.dataset.name!r})")
    if loss_targets(cfg.loss.name) == "raters" and not getattr(cls, "annotators", None):
        raise ConfigError(f"losses: {cfg.loss.name!r} needs several annotators; {cfg.dataset.name!r} has one")
    try:
        create_loss(cfg.loss.name, **cfg.loss.kwargs)  # cheap; checks every term's options
    except TypeError as e:
        raise ConfigError(f"losses: {cfg.loss.name!r}: {e}") from None
    except ValueError as e:
        raise ConfigError(f"losses: {e}") from None
    kwargs = _datamodule_kwargs(cfg)
    try:
        check_kwargs("dataset", cfg.dataset.name, cls, [k for k in kwargs if k not in _RUN_DATA_ARGS])
        if hasattr(cls, "check_kwargs"):
            cls.check_kwargs(kwargs)
    except ValueError as e:
        raise ConfigError(f"datasets: {e}") from None


def plan_sweep(sweep: SweepConfig) -> list[RunConfig]:
    """Every run of ``sweep``, each checked by :func:`resolve_run` and :func:`check_run`.

    Raises:
        ConfigError: the first bad run, naming the field and the run.
    """
    runs = sweep.expand()
    checked: set[str] = set()
    for cfg in runs:
        key = json.dumps(
            [
                cfg.dataset.name,
                cfg.dataset.kwargs,
                cfg.model.name,
                cfg.model.kwargs,
                cfg.loss.name,
                cfg.loss.kwargs,
            ],
            sort_keys=True,
            default=str,
        )
        if key in checked:
            continue  # seeds and folds share the components
        checked.add(key)
        try:
            check_run(resolve_run(cfg))
        except KeyError as e:
            raise ConfigError(str(e.args[0]) if e.args else str(e)) from None
    return runs


# ---- building a run ----------------------------------------------------------------------------


@dataclass
class BuiltRun:
    """Everything :func:`execute_run` needs; built by :func:`build_run`."""

    cfg: RunConfig
    resolved: RunConfig
    work_dir: Path
    datamodule: Any
    module: SegmentationModule
    trainer: L.Trainer
    metrics: CaseMetricsCallback
    lr_trace: LRTraceCallback
    checkpoint: Path
    resume_step: int | None
    wandb_logger: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def build_datamodule(cfg: RunConfig) -> L.LightningDataModule:
    """The run's DataModule from the resolved config (``resolve_run``)."""
    return create_datamodule(cfg.dataset.name, **_datamodule_kwargs(cfg))


def build_module(cfg: RunConfig, dm: Any) -> SegmentationModule:
    """Network + loss + optimiser settings for ``dm``'s dimensions and classes (resolved config)."""
    net = create_model(
        cfg.model.name,
        spatial_dims=dm.spatial_dims,
        in_channels=dm.in_channels,
        out_channels=dm.num_classes,
        **cfg.model.kwargs,
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
        sam_rho=o.sam_rho,
        sam_base=o.sam_base,
        loss_targets=loss_targets(cfg.loss.name),
        gradient_clip_val=cfg.trainer.gradient_clip_val if o.optimizer == "sam" else None,
        sw_batch_size=cfg.eval.sw_batch_size,
        sw_overlap=cfg.eval.sw_overlap,
    )


def trainer_kwargs(t: TrainerConfig, *, manual_optimization: bool = False) -> dict[str, Any]:
    """``lightning.Trainer`` arguments from the typed config (every field under its own name).

    Under manual optimisation (SAM) Lightning refuses ``gradient_clip_val``; the module clips.
    """
    kw = {f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.name not in _NOT_TRAINER_ARGS}
    if manual_optimization:
        kw["gradient_clip_val"] = None
    return kw


def build_trainer(
    cfg: RunConfig, work_dir: Path, callbacks: list[L.Callback], loggers: list[Any], progress: bool
) -> L.Trainer:
    """A Lightning Trainer from ``cfg.trainer`` plus the run's callbacks and loggers."""
    return L.Trainer(
        **trainer_kwargs(cfg.trainer, manual_optimization=cfg.optim.optimizer == "sam"),
        default_root_dir=work_dir,
        callbacks=callbacks,
        logger=loggers,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        enable_checkpointing=False,  # ResumeCheckpoint writes the one resume checkpoint
    )


def resume_point(path: Path) -> tuple[int, int] | None:
    """``(global step, training batches already done in its epoch)`` of a Lightning checkpoint, or
    None when there is none; read with one load (the batches are skipped on resume)."""
    if not path.exists():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    step = int(ckpt.get("global_step", 0))
    try:
        progress = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]
        if progress.get("is_last_batch"):
            return step, 0  # saved at the end of an epoch: the next epoch starts from its first batch
        # a checkpoint written in on_train_batch_end has processed (trained on) the batch that
        # Lightning only counts as completed after the hook
        return step, int(progress["current"]["processed"])
    except (KeyError, TypeError, AttributeError):
        return step, 0


def build_run(
    cfg: RunConfig,
    results: Path,
    *,
    tracking: TrackingConfig | None = None,
    progress: bool = True,
) -> BuiltRun:
    """Resolve ``cfg`` and build its DataModule, module, callbacks and Trainer (nothing runs yet)."""
    resolved = resolve_run(cfg)
    work_dir = Path(results) / ".work" / cfg.run_id
    rank = global_rank(cfg.trainer)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(resolved)
    dm.setup("fit")
    module = build_module(resolved, dm)
    ckpt = work_dir / "checkpoints" / "last.ckpt"
    point = resume_point(ckpt)
    resume_step = None if point is None else point[0]
    if point is not None and hasattr(dm, "skip_train_batches"):
        dm.skip_train_batches(point[1])  # continue the epoch where it stopped
    e = resolved.eval
    wandb_on = tracking is not None and tracking.wandb
    metrics_cb = CaseMetricsCallback(
        betti_patch=e.betti_patch,
        nsd_tolerance=e.nsd_tolerance,
        examples=tracking.log_images if wandb_on else 0,
        save_dir=Path(results) / "predictions" / cfg.run_id,
        save_ids=_saved_ids(dm, e.save_predictions),
        save_probabilities=e.save_probabilities,
    )
    lr_cb = LRTraceCallback()
    callbacks: list[L.Callback] = [
        metrics_cb,
        lr_cb,
        ResumeCheckpoint(ckpt, every_n_steps=resolved.trainer.checkpoint_every_n_steps),
    ]
    loggers: list[Any] = [CSVLogger(work_dir, name="csv", version="")]
    wandb_logger = None
    if wandb_on and rank == 0:
        from bench.tracking import wandb_logger as make_wandb_logger

        wandb_logger = make_wandb_logger(resolved, tracking, work_dir)
        loggers.append(wandb_logger)
    trainer = build_trainer(resolved, work_dir, callbacks, loggers, progress)
    return BuiltRun(
        cfg, resolved, work_dir, dm, module, trainer, metrics_cb, lr_cb, ckpt, resume_step, wandb_logger
    )


def _saved_ids(dm: Any, n: int) -> set[str]:
    """The test cases whose predictions are saved: the first ``n`` by case id (-1: all)."""
    if n == 0:
        return set()
    ids = sorted(dm.good_case_ids("test")) if hasattr(dm, "good_case_ids") else []
    return set(ids if n < 0 else ids[:n])


# ---- executing a run ---------------------------------------------------------------------------


def execute_run(run: BuiltRun, record: dict[str, Any]) -> dict[str, Any]:
    """Fit (resuming from the checkpoint if there is one), test, evaluate; fill and return ``record``."""
    dm, module, trainer = run.datamodule, run.module, run.trainer
    record["config"] = run.resolved.to_dict()
    record["params"] = count_parameters(module.net)
    record["resumed_from_step"] = run.resume_step
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=str(run.checkpoint) if run.resume_step is not None else None)
    record["train_seconds"] = time.perf_counter() - start
    record["steps"] = trainer.global_step
    record["epochs"] = trainer.current_epoch
    record["lr_trace"] = run.lr_trace.trace
    record["schedule_steps"] = module.schedule_steps
    fault_point("before_test")
    start = time.perf_counter()
    trainer.test(module, datamodule=dm, verbose=False)
    record["test_seconds"] = time.perf_counter() - start
    record["infer_seconds"] = module.infer_seconds
    record["world_size"] = trainer.world_size
    record["split"] = dm.split_info()
    record["cases"] = run.metrics.rows
    record["aggregates"] = reduce_cases(run.metrics.rows)
    record["predictions"] = run.metrics.saved
    return record


def _count_start(work_dir: Path) -> int:
    """Append this start to ``work_dir/starts.log``; returns how many times the run started."""
    path = work_dir / "starts.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "at": now()}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
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
    if needs_launch(resolve_run(cfg).trainer):
        return run_launched(cfg, results, tracking=tracking, progress=progress, extra=extra)
    work_dir = results / ".work" / cfg.run_id
    rank = global_rank(cfg.trainer)
    record = new_record(
        "train",
        cfg.run_id,
        config_hash=cfg.config_hash,
        config=cfg.to_dict(),
        status="running",
        attempt=_count_start(work_dir) if rank == 0 else None,
        device=device_info(cfg.trainer.accelerator),
        **(extra or {}),
    )
    run: BuiltRun | None = None
    memory = PeakMemory(cuda=cfg.trainer.accelerator != "cpu")
    try:
        if cfg.trainer.strategy in SPAWN_STRATEGIES:
            raise ConfigError(
                f"trainer.strategy: {cfg.trainer.strategy!r} is not supported: spawned ranks cannot hand "
                "the per-case metrics back; use strategy: ddp"
            )
        memory.start()
        run = build_run(cfg, results, tracking=tracking, progress=progress)
        execute_run(run, record)
        memory.stop()
        record["memory"] = memory.result()
        record["status"] = "done"
        if run.wandb_logger is not None:
            from bench.tracking import log_record

            try:
                log_record(run.wandb_logger, record, run.metrics.examples)
            except Exception as exc:  # noqa: BLE001 - tracking must not fail a finished run
                record["tracking_error"] = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a failed run is recorded, the sweep goes on
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
    finally:
        memory.stop()
        if run is not None and run.wandb_logger is not None:
            from bench.tracking import finish

            finish(run.wandb_logger, failed=record["status"] != "done")
    if run is not None:
        rank = run.trainer.global_rank
    if rank != 0:
        return record  # only global rank 0 writes the record
    record["finished_at"] = now()
    fault_point("record_write")
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
    shutil.rmtree(results / "predictions" / run_id, ignore_errors=True)


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


def run_state(results: Path, cfg: RunConfig) -> str:
    """``done``, ``failed`` or ``to run`` for one run (what ``--dry-run`` prints)."""
    record = read_record(record_path(results, cfg.run_id))
    if record is None:
        return "to run"
    return "done" if record.get("status") == "done" else "failed"


def run_sweep(
    sweep: SweepConfig,
    results: Path,
    *,
    force: bool = False,
    progress: bool = True,
    runs: list[RunConfig] | None = None,
) -> list[dict[str, Any]]:
    """Run every configuration of ``sweep`` not yet done; returns the records written now.

    Several processes may run the same sweep on one results folder: each run is claimed with
    an flock, so it is done exactly once; a dead worker's claim is released by the kernel.
    """
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    clean_stale_temp(results)  # half-written files of a worker that was killed
    runs = plan_sweep(sweep) if runs is None else runs
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
