"""``evaluate_case``: every metric of one case as a flat dict (the runner's contract)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bench.metrics._convert import (
    ArrayLike,
    check_labels,
    check_probabilities,
    check_same_shape,
    spacing_tuple,
    to_numpy,
)
from bench.metrics._parallel import max_children, submit
from bench.metrics.calibration import brier_score, expected_calibration_error
from bench.metrics.distance import _hd95_compute, _nsd_compute, surface_distances
from bench.metrics.functional import _dice_compute, _iou_compute
from bench.metrics.topology import (
    _cldice_combine,
    _global_betti_errors,
    _patch_betti_errors,
    _patch_slices,
    _skeleton_fraction,
)


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


def _joint_box(p: np.ndarray, g: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of ``p | g`` plus a one-voxel margin (clipped); the whole image if empty."""
    union = p | g
    box = []
    for ax in range(p.ndim):
        nz = np.flatnonzero(union.any(axis=tuple(a for a in range(p.ndim) if a != ax)))
        box.append(slice(max(int(nz[0]) - 1, 0), int(nz[-1]) + 2) if nz.size else slice(None))
    return tuple(box)


def _both_fractions(p: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """clDice's (Tprec, Tsens) of two non-empty masks."""
    return _skeleton_fraction(p, g), _skeleton_fraction(g, p)


class _ClassCase:
    """One class of one case: full-size masks, their joint crop and the pending clDice.

    Every metric but the patch-wise Betti errors (whose grid starts at the image origin) is
    computed on the crop, which gives identical values: Betti numbers, skeletons and surface
    edges only see the foreground and its one-voxel background margin. clDice's two
    skeletons (the slowest part) start first, in child processes for large volumes: one
    child for both on two cores, one child each with more.
    """

    def __init__(self, p: np.ndarray, g: np.ndarray, keep_full: bool) -> None:
        self.full = (p, g) if keep_full else None  # only the patch-wise Betti errors need them
        box = _joint_box(p, g)
        self.pc, self.gc = np.ascontiguousarray(p[box]), np.ascontiguousarray(g[box])
        self.cldice = self._start_cldice()

    def _start_cldice(self) -> Callable[[], float]:
        """``cldice(pc, gc)`` with its two skeletons started in parallel; returns a waiter."""
        p_any, g_any = bool(self.pc.any()), bool(self.gc.any())
        if not (p_any and g_any):  # cldice's empty rules: NaN if both are empty, else 0
            value = 0.0 if (p_any or g_any) else float("nan")
            return lambda: value
        if max_children() >= 2:  # one skeleton per child
            tprec = submit(_skeleton_fraction, self.pc, self.gc, n_voxels=self.pc.size)
            tsens = submit(_skeleton_fraction, self.gc, self.pc, n_voxels=self.gc.size)
            return lambda: _cldice_combine(tprec(), tsens())
        both = submit(_both_fractions, self.pc, self.gc, n_voxels=self.pc.size)  # one child, 2 cores
        return lambda: _cldice_combine(*both())

    def metrics(
        self,
        spacing: Sequence[float],
        betti_patch: int | Sequence[int] | None,
        nsd_tolerance: float,
    ) -> dict[str, float]:
        """All metrics of this class except ``cldice`` (which :attr:`cldice` returns)."""
        tp = np.count_nonzero(self.pc & self.gc)
        n_p, n_g = np.count_nonzero(self.pc), np.count_nonzero(self.gc)
        row = {"dice": float(_dice_compute(tp, n_p, n_g)), "iou": float(_iou_compute(tp, n_p, n_g))}
        row["cldice"] = float("nan")  # placeholder keeping the key order; filled by the caller
        row.update(_global_betti_errors(self.pc, self.gc, None))
        if betti_patch is not None and self.full is not None:
            row.update(_patch_betti_errors(*self.full, betti_patch, None))
        distances = surface_distances(self.pc, self.gc, spacing=spacing)  # shared by hd95 and nsd
        row["hd95"] = _hd95_compute(*distances)
        row["nsd"] = _nsd_compute(*distances, nsd_tolerance)
        return row


def _class_mask(labels: np.ndarray, c: int) -> np.ndarray:
    if labels.dtype == np.bool_:  # binary prediction from two-channel probabilities
        return labels if c == 1 else ~labels
    return labels == c


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate_case(
    prob_or_pred: ArrayLike,
    gt: ArrayLike,
    *,
    spacing: float | Sequence[float] | None = None,
    fov: ArrayLike | None = None,
    betti_patch: int | Sequence[int] | None = None,
    include_background: bool = False,
    nsd_tolerance: float = 1.0,
    n_bins: int = 15,
    num_classes: int | None = None,
) -> dict[str, float]:
    """Computes every segbench metric for one 2D or 3D case.

    Args:
        prob_or_pred: class probabilities ``(C, H, W[, D])`` (softmax output, C >= 2,
            channel 0 = background; the prediction is their argmax) or an integer label map
            ``(H, W[, D])``.
        gt: integer label map ``(H, W[, D])`` with labels in ``[0, C)``.
        spacing: voxel size per axis (physical units for ``hd95`` / ``nsd``); ``None`` = 1.
        fov: optional bool field of view ``(H, W[, D])``. Outside it, prediction and truth
            are set to background for every metric, and calibration counts only FOV voxels.
        betti_patch: patch size for the patch-wise Betti errors (``*_patch`` keys).
        include_background: also evaluate class 0.
        nsd_tolerance: NSD tolerance τ in the units of ``spacing``.
        n_bins: ECE bins.
        num_classes: number of classes C for label-map input (default: the largest label
            in ``prob_or_pred`` or ``gt`` plus one, at least 2). Pass it so that every case
            of a dataset returns the same keys. With probabilities it must equal C.

    Returns:
        Flat ``dict[str, float]``: ``dice, iou, cldice, betti0_err, betti1_err``
        (``betti2_err`` in 3D), ``hd95, nsd``, the ``*_patch`` Betti keys when
        ``betti_patch`` is given, and ``ece, brier`` when probabilities are given. When
        more than one class is evaluated each metric also appears per class as
        ``<metric>_<c>`` and the unsuffixed key is the NaN-skipping mean over classes
        (``ece``/``brier`` are then top-label / multi-class, with no per-class keys).
        Values may be NaN or inf by the empty-mask rules in ``docs/metrics.md``.

    Raises:
        ValueError: on invalid probabilities, labels, shapes, spacing or fov.
    """
    g = to_numpy(gt, "gt")
    if g.ndim not in (2, 3) or g.size == 0:
        raise ValueError(f"`gt` must be a non-empty 2D or 3D label map, got shape {g.shape}.")
    if not np.isfinite(nsd_tolerance) or nsd_tolerance < 0:
        raise ValueError(f"`nsd_tolerance` must be finite and >= 0, got {nsd_tolerance}.")
    pred, prob, num_classes = _split_input(prob_or_pred, g, num_classes)
    check_labels(g, num_classes, "gt")
    if g.dtype.kind == "f":
        g = g.astype(np.int64)
    sp = spacing_tuple(spacing, g.ndim)
    if betti_patch is not None:
        _patch_slices(g.shape, betti_patch)  # validates before any work starts
    m = None
    if fov is not None:
        m = to_numpy(fov, "fov")
        check_same_shape(m, g, "fov", "gt")
        check_labels(m, 2, "fov")
        m = m.astype(bool)
        pred = pred & m if pred.dtype == np.bool_ else np.where(m, pred, 0)
        g = np.where(m, g, 0)
    classes = list(range(0 if include_background else 1, num_classes))
    keep_full = betti_patch is not None
    cases = {c: _ClassCase(_class_mask(pred, c), g == c, keep_full) for c in classes}  # starts clDice
    try:
        rows = {c: cases[c].metrics(sp, betti_patch, nsd_tolerance) for c in classes}
        if prob is not None:
            cal_prob, cal_gt = (prob[1], g) if num_classes == 2 else (prob, g)
            ece = expected_calibration_error(cal_prob, cal_gt, n_bins=n_bins, mask=m)
            brier = brier_score(cal_prob, cal_gt, mask=m)
    finally:
        cl = {c: cases[c].cldice() for c in classes}  # waits for (and reaps) any child
    for c in classes:
        rows[c]["cldice"] = cl[c]
    out: dict[str, float] = {}
    for key in rows[classes[0]]:
        if len(classes) > 1:
            out.update({f"{key}_{c}": rows[c][key] for c in classes})
        out[key] = _mean([rows[c][key] for c in classes]) if len(classes) > 1 else rows[classes[0]][key]
    if prob is not None:
        out["ece"], out["brier"] = ece, brier
    return out
