"""``case_metrics``: every registered metric of one case as a flat dict (the runner's contract).

The metrics themselves are registered in ``bench/metrics/catalog/`` (:mod:`bench.metrics.registry`);
this module checks the input, builds one :class:`~bench.metrics.context.ClassContext` per
evaluated class, starts the deferred metrics (clDice's skeletons, in a child process for large
volumes) before the others, and lays the values out as keys.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.metrics._convert import (
    ArrayLike,
    check_labels,
    check_probabilities,
    check_same_shape,
    spacing_tuple,
    to_numpy,
)
from bench.metrics.context import CaseContext, ClassContext
from bench.metrics.registry import CASE_PROTOCOLS, METRICS, SEGMENTATION, MetricInfo
from bench.metrics.settings import MetricSettings

_LEGACY = ("betti_patch", "nsd_tolerance")  # old keywords, folded into MetricSettings


def _split_input(
    prob_or_pred: ArrayLike, gt: np.ndarray, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Returns (label map, class probabilities or None, number of classes)."""
    x = to_numpy(prob_or_pred, "prob_or_pred")
    if x.ndim == gt.ndim + 1:
        check_same_shape(x[0], gt, "prob_or_pred[0]", "gt")
        if x.shape[0] < 2:
            raise ValueError(f"`prob_or_pred` probabilities need C >= 2 channels, got shape {x.shape}.")
        if num_classes is not None and num_classes != x.shape[0]:
            raise ValueError(f"`num_classes`={num_classes} but `prob_or_pred` has {x.shape[0]} channels.")
        check_probabilities(x, "prob_or_pred")
        if x.shape[0] == 2:  # argmax of two channels (ties go to class 0), without a strided pass
            return np.greater(x[1], x[0]), x, 2
        return np.argmax(x, axis=0), x, int(x.shape[0])
    check_same_shape(x, gt, "prob_or_pred", "gt")
    if x.dtype.kind == "f":
        check_labels(x, np.iinfo(np.int64).max, "prob_or_pred")
        x = x.astype(np.int64)
    elif x.dtype.kind not in "biu":
        raise ValueError(f"`prob_or_pred` label map must be integer, got dtype {x.dtype}.")
    if num_classes is not None:
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2, got {num_classes}.")
        check_labels(x, num_classes, "prob_or_pred")
        return x, None, int(num_classes)
    check_labels(x, np.iinfo(np.int64).max, "prob_or_pred")
    return x, None, max(int(x.max(initial=0)) + 1, int(gt.max(initial=0)) + 1, 2)


def _class_mask(labels: np.ndarray, c: int) -> np.ndarray:
    if labels.dtype == np.bool_:  # binary prediction from two-channel probabilities
        return labels if c == 1 else ~labels
    return labels == c


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _active(
    info: MetricInfo, ndim: int, has_prob: bool, settings: MetricSettings, protocols: Sequence[str]
) -> bool:
    """Whether ``info`` is computed for this case."""
    return (
        info.protocol in protocols
        and ndim in info.ndims
        and (has_prob or not info.needs_probabilities)
        and (info.requires is None or settings.get(info.requires) is not None)
    )


def case_metrics(
    prob_or_pred: ArrayLike,
    gt: ArrayLike,
    *,
    spacing: float | Sequence[float] | None = None,
    fov: ArrayLike | None = None,
    num_classes: int | None = None,
    include_background: bool = False,
    settings: MetricSettings | None = None,
    parallel: bool = True,
    protocols: Sequence[str] = (SEGMENTATION,),
) -> dict[str, float]:
    """Computes every registered metric of the asked protocols for one 2D or 3D case.

    Args:
        prob_or_pred: class probabilities ``(C, H, W[, D])`` (softmax output, C >= 2,
            channel 0 = background; the prediction is their argmax) or an integer label map
            ``(H, W[, D])``.
        gt: integer label map ``(H, W[, D])`` with labels in ``[0, C)``.
        spacing: voxel size per axis (physical units for ``hd95`` / ``nsd``); ``None`` = 1.
        fov: optional bool field of view ``(H, W[, D])``. Outside it, prediction and truth
            are set to background for every metric, and calibration counts only FOV voxels.
        num_classes: number of classes C for label-map input (default: the largest label
            in ``prob_or_pred`` or ``gt`` plus one, at least 2). Pass it so that every case
            of a dataset returns the same keys. With probabilities it must equal C.
        include_background: also evaluate class 0.
        settings: what the metrics read (:class:`MetricSettings`; ``None``: the defaults).
        parallel: let slow parts (clDice's 3D skeletons) run in a forked child process while
            the other metrics are computed; ``False`` keeps everything in this process (e.g.
            in worker processes that already use every core). The values are the same.
        protocols: the protocols whose metrics are computed, among
            :data:`~bench.metrics.registry.CASE_PROTOCOLS`. The default, ``("segmentation",)``,
            is what every ordinary run computes; add ``"uncertainty"`` for ``unc_msp`` and
            ``unc_entropy`` (with probabilities).

    Returns:
        Flat ``dict[str, float]`` in the registry's order (``position``): ``dice, iou, cldice, betti0_err,
        betti1_err`` (``betti2_err`` in 3D), the ``*_patch`` Betti keys when
        ``settings.betti_patch`` is set, ``hd95, nsd``, and ``ece, brier`` when probabilities
        are given, then any added metric. When more than one class is evaluated each per-class
        metric also appears per class as ``<metric>_<c>`` and the unsuffixed key is the
        NaN-skipping mean over classes (``ece``/``brier`` are then top-label / multi-class,
        with no per-class keys). Values may be NaN or inf by the empty-mask rules in
        ``docs/metrics.md``.

    Raises:
        ValueError: on invalid probabilities, labels, shapes, spacing, fov or settings, or a
            protocol ``case_metrics`` does not compute.
    """
    unknown = [p for p in protocols if p not in CASE_PROTOCOLS]
    if unknown or isinstance(protocols, str):
        raise ValueError(f"`protocols` must be a sequence of {CASE_PROTOCOLS}, got {protocols!r}.")
    s = settings if settings is not None else MetricSettings()
    g = to_numpy(gt, "gt")
    if g.ndim not in (2, 3) or g.size == 0:
        raise ValueError(f"`gt` must be a non-empty 2D or 3D label map, got shape {g.shape}.")
    pred, prob, num_classes = _split_input(prob_or_pred, g, num_classes)
    check_labels(g, num_classes, "gt")
    if g.dtype.kind == "f":
        g = g.astype(np.int64)
    sp = spacing_tuple(spacing, g.ndim)
    active = [m for m in METRICS.values() if _active(m, g.ndim, prob is not None, s, protocols)]
    checks = {m.check: m for m in active if m.check is not None}  # each check function once
    for check, m in checks.items():  # validates before any work starts
        check(g.shape, **{k: s.get(k) for k in m.reads})
    m_fov = None
    if fov is not None:
        m_fov = to_numpy(fov, "fov")
        check_same_shape(m_fov, g, "fov", "gt")
        check_labels(m_fov, 2, "fov")
        m_fov = m_fov.astype(bool)
        pred = pred & m_fov if pred.dtype == np.bool_ else np.where(m_fov, pred, 0)
        g = np.where(m_fov, g, 0)
    classes = list(range(0 if include_background else 1, num_classes))
    case = CaseContext(pred, g, prob, m_fov, num_classes, classes, sp, parallel)
    per_class = [m for m in active if m.per_class_key is not None]
    keep_full = any(m.full_image for m in per_class)
    by_class: dict[str, dict[int, float]] = {m.name: {} for m in per_class}
    by_case: dict[str, float] = {}
    pending: list[tuple[str, int, Callable[[], float]]] = []
    ctxs: dict[int, ClassContext] = {}
    try:
        for c in classes:  # crops, and starts the deferred metrics (clDice) as early as possible
            ctxs[c] = ClassContext(
                c, _class_mask(pred, c), g == c, spacing=sp, keep_full=keep_full, parallel=parallel
            )
            pending += [(m.name, c, _call(m, ctxs[c], s)) for m in per_class if m.deferred]
        for c in classes:
            for m in per_class:
                if not m.deferred:
                    by_class[m.name][c] = float(_call(m, ctxs[c], s))
        for m in active:
            if m.per_class_key is None:
                by_case[m.name] = float(_call(m, case, s))
    finally:
        done = [(name, c, float(wait())) for name, c, wait in pending]  # waits for (reaps) any child
    for name, c, v in done:
        by_class[name][c] = v
    return _layout(active, by_class, by_case, classes)


def case_row(
    prob: np.ndarray,
    gt: ArrayLike,
    pred: np.ndarray | None = None,
    *,
    spacing: float | Sequence[float] | None = None,
    fov: ArrayLike | None = None,
    settings: MetricSettings | None = None,
) -> dict[str, Any]:
    """A scored case as records keep it: :func:`case_metrics` of the probabilities ``prob
    (C, *spatial)``; with a post-processed label map ``pred (*spatial)``, every metric of ``pred``
    instead (calibration, which only probabilities have, stays that of ``prob``) and the
    probabilities' own under ``raw``."""
    metrics = case_metrics(prob, gt, spacing=spacing, fov=fov, settings=settings)
    if pred is None:
        return metrics
    post = case_metrics(pred, gt, spacing=spacing, fov=fov, num_classes=prob.shape[0], settings=settings)
    return {**{k: post.get(k, v) for k, v in metrics.items()}, "raw": metrics}


def _call(m: MetricInfo, ctx: ClassContext | CaseContext, s: MetricSettings) -> Any:
    """``m.fn(ctx, **settings it reads)``: a value, or a waiter for a deferred metric."""
    return m.fn(ctx, **{k: s.get(k) for k in m.reads})


def _layout(
    active: list[MetricInfo],
    by_class: dict[str, dict[int, float]],
    by_case: dict[str, float],
    classes: list[int],
) -> dict[str, float]:
    """One flat row in registration order: a per-class metric gives its per-class keys then
    their NaN-skipping mean (just the value when one class is evaluated)."""
    out: dict[str, float] = {}
    for m in active:
        if m.per_class_key is None:
            out[m.name] = by_case[m.name]
            continue
        v = by_class[m.name]
        if len(classes) > 1:
            out.update({m.per_class_key.format(key=m.name, c=c): v[c] for c in classes})
            out[m.name] = _mean([v[c] for c in classes])
        else:
            out[m.name] = v[classes[0]]
    return out
