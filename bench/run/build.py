"""Building a run: the objects that execute a resolved ``RunConfig`` (nothing runs yet).

:func:`build_run` resolves the config and builds its DataModule (:func:`build_datamodule`),
LightningModule (:func:`build_module`), callbacks, loggers and Trainer (:func:`build_trainer`), and
finds the checkpoint a killed attempt left (:func:`resume_point`); :mod:`bench.run.execute` runs
what it returns.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from bench.config import RunConfig, TrackingConfig, TrainerConfig
from bench.records.predictions import PREDICTIONS
from bench.run.callbacks import CaseMetricsCallback, LRTraceCallback, ResumeCheckpoint, TrainClock
from bench.run.curves import ValTraceCallback
from bench.run.launch import global_rank
from bench.run.plan import FILES_DIGEST, datamodule_kwargs, resolve_run
from bench.run.progress import Progress, ProgressCallback
from bench.run.validation import (
    FinalValidation,
    ValidationRNG,
    cadence_kwargs,
    limit_val_cases,
    step_cadence,
)
from datamodules import create_datamodule, dataset_class
from datamodules.args import DataArgumentError
from models import SegmentationModule, create_loss, create_model, create_scheme
from models.registry import loss_targets, scheme_entry

# TrainerConfig fields that are segbench's own, not ``lightning.Trainer`` arguments.
_NOT_TRAINER_ARGS = ("checkpoint_every_n_steps", "val_every_n_steps", "val_max_cases", "torch_threads")


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
    val_trace: ValTraceCallback
    checkpoint: Path
    resume_step: int | None
    wandb_logger: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    clock: TrainClock = field(default_factory=TrainClock)


def build_datamodule(cfg: RunConfig) -> L.LightningDataModule:
    """The run's DataModule from the resolved config (``resolve_run``).

    Raises:
        DataArgumentError: a file-declared dataset whose files changed since the run was planned
            (its ``files_digest``), naming the folder.
    """
    want = cfg.dataset.kwargs.get(FILES_DIGEST)
    if want is not None:
        cls = dataset_class(cfg.dataset.name, cfg.dataset.kwargs)
        root = cfg.dataset.kwargs.get("root")
        now = cls.content_digest(root)
        if now != want:
            raise DataArgumentError(
                f"{cfg.dataset.name}: the files under {root} changed since this run was planned "
                f"(files_digest {want}, now {now}); a run is only resumed on the data it started with"
            )
    return create_datamodule(cfg.dataset.name, **datamodule_kwargs(cfg))


def build_module(cfg: RunConfig, dm: Any) -> SegmentationModule:
    """Network + loss + training scheme + optimiser settings for ``dm``'s dimensions and classes
    (resolved config); the network takes the scheme's registered ``click_channels`` after the
    image's channels (``interactive``: positive and negative click maps)."""
    net = create_model(
        cfg.model.name,
        spatial_dims=dm.spatial_dims,
        in_channels=dm.in_channels + int(scheme_entry(cfg.scheme.name).meta.get("click_channels", 0)),
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
        tta=cfg.eval.tta,
        postprocess=cfg.eval.postprocess,
        scheme=create_scheme(cfg.scheme.name, **cfg.scheme.kwargs),
    )


def trainer_kwargs(t: TrainerConfig, *, manual_optimization: bool = False) -> dict[str, Any]:
    """``lightning.Trainer`` arguments from the typed config (every field under its own name).

    The validation cadence comes from :func:`bench.run.validation.cadence_kwargs`;
    ``limit_val_batches: 1.0`` is passed as Lightning's own default (None), which means the same
    and does not make Lightning print that it will use 100 % of the batches. Under manual
    optimisation (SAM) Lightning refuses ``gradient_clip_val``; the module clips.
    """
    kw = {f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.name not in _NOT_TRAINER_ARGS}
    kw.update(cadence_kwargs(t))
    if kw["limit_val_batches"] == 1.0:
        kw["limit_val_batches"] = None
    if manual_optimization:
        kw["gradient_clip_val"] = None
    return kw


def launched_by_cluster() -> bool:
    """Whether a launcher started this process: a SLURM job step (as under ``--executor slurm``,
    or ``python -m bench.cluster.slurm`` in an sbatch script), torchrun, LSF or MPI; the
    environments Lightning detects, in its order (SLURM as Lightning's ``_is_srun_used``)."""
    from lightning.fabric.plugins.environments import LSFEnvironment, MPIEnvironment, TorchElasticEnvironment

    if "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return True
    return TorchElasticEnvironment.detect() or LSFEnvironment.detect() or MPIEnvironment.detect()


def cluster_plugins() -> list[Any]:
    """``[LightningEnvironment()]`` for a local run; nothing (Lightning detects the environment)
    when :func:`launched_by_cluster`.

    Lightning's detection of SLURM prints "The `srun` command is available on your system but is
    not used" in a local run on any machine that has SLURM installed; a local run is told its
    environment instead (the one Lightning falls back to). Lightning probes SLURM once more when
    ``fit`` / ``test`` get no checkpoint path; :func:`bench.run.quiet.quiet_run` drops that hint
    in local runs.
    """
    from lightning.fabric.plugins.environments import LightningEnvironment

    return [] if launched_by_cluster() else [LightningEnvironment()]


def build_trainer(
    cfg: RunConfig,
    work_dir: Path,
    callbacks: list[L.Callback],
    loggers: list[Any],
    progress: bool | Progress,
) -> L.Trainer:
    """A Lightning Trainer from ``cfg.trainer`` plus the run's callbacks and loggers.

    Every Trainer segbench builds also gets :class:`~bench.run.validation.ValidationRNG` (first,
    so that checkpoints written after a validation hold the restored RNG states),
    :class:`~bench.run.validation.FinalValidation` under the step cadence, and, with ``progress``,
    segbench's :class:`~bench.run.progress.ProgressCallback` (``True``: a display of its own;
    a :class:`~bench.run.progress.Progress`: the sweep's). Lightning's progress bar is off.
    """
    own: list[L.Callback] = [ValidationRNG()]
    if step_cadence(cfg.trainer):
        own.append(FinalValidation())
    if progress:
        own.append(ProgressCallback(progress if isinstance(progress, Progress) else Progress()))
    return L.Trainer(
        **trainer_kwargs(cfg.trainer, manual_optimization=cfg.optim.optimizer == "sam"),
        default_root_dir=work_dir,
        callbacks=[*own, *callbacks],
        logger=loggers,
        plugins=cluster_plugins(),
        enable_progress_bar=False,
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
    progress: bool | Progress = True,
) -> BuiltRun:
    """Resolve ``cfg`` and build its DataModule, module, callbacks and Trainer (nothing runs yet).

    The DataModule validates on the first ``trainer.val_max_cases`` validation cases as resolved
    (:func:`bench.run.validation.resolved_val_cases`); the test split is never limited.
    """
    resolved = resolve_run(cfg)
    work_dir = Path(results) / ".work" / cfg.run_id
    rank = global_rank(cfg.trainer)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(resolved)
    dm.setup("fit")
    limit_val_cases(dm, resolved.trainer.val_max_cases)
    module = build_module(resolved, dm)
    ckpt = work_dir / "checkpoints" / "last.ckpt"
    point = resume_point(ckpt)
    resume_step = None if point is None else point[0]
    if point is not None and hasattr(dm, "skip_train_batches"):
        dm.skip_train_batches(point[1])  # continue the epoch where it stopped
    e = resolved.eval
    wandb_on = tracking is not None and tracking.wandb
    metrics_cb = CaseMetricsCallback(
        settings=e.metric_settings(),
        examples=tracking.log_images if wandb_on else 0,
        save_dir=Path(results) / PREDICTIONS / cfg.run_id,
        save_ids=_saved_ids(dm, e.save_predictions),
        save_probabilities=e.save_probabilities,
    )
    lr_cb = LRTraceCallback()
    val_cb = ValTraceCallback()
    clock = TrainClock()
    callbacks: list[L.Callback] = [
        metrics_cb,
        lr_cb,
        val_cb,
        clock,
        ResumeCheckpoint(ckpt, every_n_steps=resolved.trainer.checkpoint_every_n_steps),
    ]
    loggers: list[Any] = [CSVLogger(work_dir, name="csv", version="")]
    wandb_logger = None
    if wandb_on and rank == 0:
        from bench.run.tracking import wandb_logger as make_wandb_logger

        wandb_logger = make_wandb_logger(resolved, tracking, work_dir)
        loggers.append(wandb_logger)
    trainer = build_trainer(resolved, work_dir, callbacks, loggers, progress)
    return BuiltRun(
        cfg,
        resolved,
        work_dir,
        dm,
        module,
        trainer,
        metrics_cb,
        lr_cb,
        val_cb,
        ckpt,
        resume_step,
        wandb_logger,
        clock=clock,
    )


def _saved_ids(dm: Any, n: int) -> set[str]:
    """The test cases whose predictions are saved: the first ``n`` by case id (-1: all)."""
    if n == 0:
        return set()
    ids = sorted(dm.good_case_ids("test")) if hasattr(dm, "good_case_ids") else []
    return set(ids if n < 0 else ids[:n])
