"""Scoring the cases of ``segbench evaluate``: one case per task, in ``--workers`` processes.

A worker reads the prediction and its ground truth (a file, or the DataModule's case), checks
them (:mod:`bench.evaluate.interpret`), scores them with ``bench.metrics.case_metrics`` and, when
asked, writes the prediction file; every failure becomes a problem that names the file. Each
worker reads its own files, so one case is in memory per worker.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

from bench.evaluate.interpret import as_ground_truth, as_prediction, check_label_values, spacings_match
from bench.evaluate.orientation import match_grid, nifti_affine, same_orientation
from bench.metrics import MetricSettings, case_metrics
from bench.records.predictions import prediction_arrays, write_prediction
from bench.records.record import constant_kind
from datamodules.readers import CaseLoadError, read_array

T = TypeVar("T")
R = TypeVar("R")


_METRIC_DEFAULTS = MetricSettings()


@dataclass(frozen=True)
class EvalSettings:
    """The metric settings an evaluation record states in its ``eval`` block (the fields of a run's
    ``eval`` config that change a metric; defaults from :class:`~bench.metrics.MetricSettings`)."""

    betti_patch: int | None = _METRIC_DEFAULTS.betti_patch  # type: ignore[assignment]
    nsd_tolerance: float = _METRIC_DEFAULTS.nsd_tolerance

    def metric_settings(self) -> MetricSettings:
        """These settings as the metrics' one settings object."""
        return MetricSettings(betti_patch=self.betti_patch, nsd_tolerance=self.nsd_tolerance)


@dataclass(frozen=True)
class CaseTask:
    """One case for a worker: where its prediction and ground truth come from."""

    case_id: str
    pred: str | None = None  # prediction file; None: the rater's label or an empty prediction
    gt: str | None = None  # ground-truth file; None: the DataModule's case
    empty: bool = False  # no prediction: score an all-background one (--missing empty)
    constant: int | None = None  # score this label everywhere (--constant: the trivial predictor)
    save: str | None = None  # write the prediction npz here (--save-predictions)


@dataclass(frozen=True)
class WorkerContext:
    """Everything a worker needs besides the task (small and picklable)."""

    settings: EvalSettings
    num_classes: int
    pred_kind: str = "auto"
    label_map: dict[int, int] | None = None
    spacing: tuple[float, ...] | None = None  # --spacing for ground truth without a header
    dataset: tuple[str, dict[str, Any]] | None = None  # (name, kwargs): rebuilt in each worker
    rater: str | None = None
    reorient: bool = False  # --reorient: a NIfTI prediction in another orientation is reoriented


@dataclass
class CaseResult:
    """A worker's answer: a metrics row or a problem ``{case_id, file, problem}``."""

    case_id: str
    row: dict[str, Any] | None = None
    problem: dict[str, str] | None = None
    kind: str | None = None
    constant: str | None = None  # the prediction is constant inside the FOV: which kind (constant_kind)


_STATE: dict[str, Any] = {}
# Set in the parent before the pool starts: forked workers inherit its set-up DataModule (its
# cases copy-on-write) instead of loading the dataset again.
PARENT: dict[str, Any] = {}


def _init_worker(ctx: WorkerContext, isolate: bool) -> None:
    """Per-process setup: the context and, in dataset mode, the set-up DataModule.

    ``isolate``: one of several workers, which already use the cores: one torch thread, and the
    metrics run without their own child processes (``case_metrics(parallel=False)``).
    """
    if isolate:
        import torch

        torch.set_num_threads(1)
    _STATE.clear()
    _STATE["ctx"] = ctx
    _STATE["parallel"] = not isolate
    if ctx.dataset is not None:
        dm = PARENT.get("dm")
        if dm is None:  # a spawned worker (no fork on this platform) sets up its own
            from datamodules import create_datamodule

            dm = create_datamodule(ctx.dataset[0], **ctx.dataset[1])
            dm.setup("test")
        _STATE["dm"] = dm


def _load_truth(task: CaseTask, ctx: WorkerContext) -> tuple[np.ndarray, Any, Any, dict[str, Any]]:
    """(labels, fov, spacing, extras) of one case, from its file or from the DataModule
    (``extras`` then holds its annotators ``label_<name>`` and ``image`` (first channel)). A
    DataModule that resamples or reorients (``maps_back``, docs/preprocessing.md) gives the label as
    its file holds it, on the file's grid and spacing, as a run's test metrics are scored.
    From a ``--gt`` file, ``extras["affine"]`` is its NIfTI affine (None for other files)."""
    if task.gt is not None:
        f = read_array(task.gt)
        return as_ground_truth(f.array, task.gt), None, f.spacing or ctx.spacing, {"affine": f.affine}
    dm = _STATE["dm"]
    case = dm.case(task.case_id)
    if getattr(dm, "maps_back", False):  # resampled / reoriented: score on the label file's own grid
        spacing = tuple(float(s) for s in case.extras["original_spacing"])
        return np.asarray(case.extras["original_label"], dtype=np.int64), None, spacing, dict(case.extras)
    return case.label, case.fov, case.spacing, {**case.extras, "image": case.image[0]}


def _label_file(dm: Any, case_id: str) -> str | None:
    """The label file the DataModule read the case from, when its index entry names one."""
    ref = dm.case_ref(case_id)
    label = ref.info.get("label") if ref is not None else None
    return str(label) if isinstance(label, (str, Path)) else None


def _prediction(
    task: CaseTask,
    ctx: WorkerContext,
    gt: np.ndarray,
    spacing: tuple[float, ...],
    where: str,
    extras: dict[str, Any],
) -> tuple[np.ndarray, str]:
    """The case's prediction (labels or ``(C, *spatial)`` probabilities) and its kind."""
    if ctx.rater is not None:
        if f"label_{ctx.rater}" not in extras:
            raise CaseLoadError(f"{where}: no annotation by rater {ctx.rater!r} for this case")
        return extras[f"label_{ctx.rater}"], "rater"
    if task.empty:
        return np.zeros(gt.shape, np.int64), "empty"
    if task.constant is not None:
        return np.full(gt.shape, task.constant, np.int64), "constant"
    f = read_array(where)
    pred_affine, gt_affine = f.affine, extras.get("affine")
    if pred_affine is not None and task.gt is None:  # dataset mode: the header of the case's label file
        gt_affine = nifti_affine(_label_file(_STATE["dm"], task.case_id))
    if gt_affine is not None and pred_affine is not None and gt.ndim == 3:
        reoriented = not same_orientation(pred_affine, gt_affine)
        f.array = match_grid(f.array, pred_affine, gt_affine, where, reorient=ctx.reorient)
        if reoriented:  # its header zooms follow the old axis order; the checked affine holds
            f.spacing = None
    if f.spacing is not None and not spacings_match(f.spacing, spacing):
        raise CaseLoadError(
            f"{where}: spacing {tuple(round(s, 6) for s in f.spacing)} differs from the ground "
            f"truth's {tuple(round(s, 6) for s in spacing)}"
        )
    return as_prediction(
        f.array, where, gt.shape, num_classes=ctx.num_classes, kind=ctx.pred_kind, label_map=ctx.label_map
    )


def score_case(task: CaseTask) -> CaseResult:
    """Read, check and score one case (in a worker); every failure becomes a problem naming the file."""
    ctx: WorkerContext = _STATE["ctx"]
    where = task.gt or f"{ctx.dataset[0] if ctx.dataset else '?'}:{task.case_id}"
    try:
        gt, fov, spacing, extras = _load_truth(task, ctx)
        check_label_values(gt, ctx.num_classes, where)
        spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * gt.ndim
        if task.pred is not None:
            where = task.pred
        pred, kind = _prediction(task, ctx, gt, spacing, where, extras)
        s = ctx.settings
        row = case_metrics(
            pred,
            gt,
            spacing=spacing,
            fov=fov,
            num_classes=ctx.num_classes,
            settings=s.metric_settings(),
            parallel=_STATE["parallel"],
        )
        if task.save:
            probabilities = pred.ndim == gt.ndim + 1
            arrays = prediction_arrays(
                gt,
                pred=None if probabilities else pred,
                prob=pred if probabilities else None,
                image=extras.get("image"),
                fov=fov,
                spacing=spacing,
            )
            write_prediction(Path(task.save), arrays)
    except (ValueError, OSError) as e:  # CaseLoadError, metric input errors
        return CaseResult(task.case_id, problem={"case_id": task.case_id, "file": where, "problem": str(e)})
    labels = pred.argmax(0) if pred.ndim == gt.ndim + 1 else pred
    constant = constant_kind(labels, ctx.num_classes, None if fov is None else np.asarray(fov, bool))
    return CaseResult(task.case_id, row={"case_id": task.case_id, **row}, kind=kind, constant=constant)


def max_label(path: str) -> int:
    """The largest label of a ground-truth file (in a worker)."""
    f = read_array(path)
    return int(as_ground_truth(f.array, path).max(initial=0))


def map_cases(
    fn: Callable[[T], R], items: Sequence[T], ctx: WorkerContext, workers: int, progress: bool, desc: str
) -> list[R]:
    """``[fn(item)]`` in ``workers`` processes (in this process for one), with a progress bar."""
    bar = tqdm(total=len(items), desc=desc, unit="case", disable=not progress)
    try:
        if workers <= 1 or len(items) <= 1:
            _init_worker(ctx, isolate=False)
            out = []
            for item in items:
                out.append(fn(item))
                bar.update()
            return out
        method = "fork" if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(
            max_workers=min(workers, len(items)),
            mp_context=mp.get_context(method),
            initializer=_init_worker,
            initargs=(ctx, True),
        ) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            results: list[Any] = [None] * len(items)
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
            return results
    finally:
        bar.close()
        _STATE.clear()
