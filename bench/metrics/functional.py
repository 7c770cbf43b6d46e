"""Pure metric functions (the single source of every metric in segbench).

Overlap metrics (:func:`dice`, :func:`iou`) live here; topology, calibration and
surface-distance metrics live in sibling modules and are re-exported from here so
``from bench.metrics.functional import <metric>`` works for all of them.

Every function accepts ``numpy.ndarray`` or ``torch.Tensor`` inputs (see ``_convert``).
Empty-mask rules are documented per function and in ``docs/metrics.md``.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.metrics._convert import ArrayLike, check_labels, check_same_shape, to_numpy
from bench.metrics.calibration import (
    brier_score,
    calibration_stats,
    expected_calibration_error,
    reliability_diagram,
)
from bench.metrics.distance import hd95, normalized_surface_dice, surface_distances
from bench.metrics.topology import betti_errors, betti_numbers, cldice

__all__ = [
    "betti_errors",
    "betti_numbers",
    "brier_score",
    "calibration_stats",
    "cldice",
    "dice",
    "expected_calibration_error",
    "hd95",
    "iou",
    "normalized_surface_dice",
    "reliability_diagram",
    "stat_scores",
    "surface_distances",
]


def _binary(x: ArrayLike, name: str) -> ArrayLike:
    """Boolean view of a 0/1 mask (numpy stays numpy, torch stays torch on its device)."""
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bool:
            return x
        if x.is_complex():
            raise ValueError(f"`{name}` must be a real-valued binary mask.")
        empty, is_float = x.numel() == 0, x.is_floating_point()
    else:
        if x.dtype == np.bool_:
            return x
        if x.dtype.kind not in "iuf":
            raise ValueError(f"`{name}` must be a numeric or bool mask, got dtype {x.dtype}.")
        empty, is_float = x.size == 0, x.dtype.kind == "f"
    if not empty:
        if is_float:
            ok = bool(((x == 0) | (x == 1)).all())
        elif isinstance(x, torch.Tensor):
            lo, hi = torch.aminmax(x)
            ok = bool((lo >= 0) & (hi <= 1))  # one device sync
        else:
            ok = bool(x.min() >= 0) and bool(x.max() <= 1)
        if not ok:
            raise ValueError(f"`{name}` must be a binary mask with values in {{0, 1}}; got other values.")
    return x != 0


def _count_dtype(x: ArrayLike) -> torch.dtype | type:
    if isinstance(x, np.ndarray):
        return np.float64
    return torch.float32 if x.device.type == "mps" else torch.float64


def stat_scores(
    preds: ArrayLike,
    target: ArrayLike,
    *,
    num_classes: int | None = None,
    include_background: bool = True,
) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """Sufficient statistics (true positives, predicted and target volume) for overlap metrics.

    Two input forms:

    * ``num_classes is None``: binary masks. A 2D/3D mask ``(H, W[, D])`` gives scalars; a
      batch ``(B, C, H, W[, D])`` of one-hot or binary channels gives ``(B, C)`` tensors.
    * ``num_classes=K``: integer label maps of any (equal) shape with labels in ``[0, K)``;
      gives ``(K,)`` tensors, or ``(K - 1,)`` when ``include_background`` is False.

    Args:
        preds: predicted mask(s) or label map, bool/int/float with values as above.
        target: reference mask(s) or label map, same shape as ``preds``.
        num_classes: number of classes for label-map input; ``None`` for binary input.
        include_background: keep class 0 (label-map input only).

    Returns:
        ``(tp, pred_sum, target_sum)`` integer counts: tensors on ``preds``' device for
        tensor input, numpy arrays for numpy input.

    Raises:
        ValueError: on shape mismatch, non-binary masks or out-of-range labels.
    """
    p, t = _same_kind(preds, target)
    check_same_shape(p, t, "preds", "target")
    if num_classes is None:
        p, t = _binary(p, "preds"), _binary(t, "target")
        if p.ndim in (2, 3):
            dims: tuple[int, ...] = tuple(range(p.ndim))
        elif p.ndim in (4, 5):
            dims = tuple(range(2, p.ndim))
        else:
            raise ValueError(
                f"binary `preds` must be (H, W[, D]) or (B, C, H, W[, D]), got shape {tuple(p.shape)}."
            )
        return (p & t).sum(dims), p.sum(dims), t.sum(dims)
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
    k = int(num_classes)
    check_labels(p, k, "preds")
    check_labels(t, k, "target")
    if isinstance(p, torch.Tensor):
        conf = torch.bincount(t.reshape(-1).long() * k + p.reshape(-1).long(), minlength=k * k).reshape(k, k)
    else:
        idx = t.reshape(-1).astype(np.intp) * k + p.reshape(-1).astype(np.intp)
        conf = np.bincount(idx, minlength=k * k).reshape(k, k)  # rows: target, cols: preds
    tp, pred_sum, target_sum = conf.diagonal(), conf.sum(0), conf.sum(1)
    if not include_background:
        tp, pred_sum, target_sum = tp[1:], pred_sum[1:], target_sum[1:]
    return tp, pred_sum, target_sum


def _ratio(num: ArrayLike, den: ArrayLike) -> ArrayLike:
    if isinstance(num, torch.Tensor):
        dt = _count_dtype(num)
        return num.to(dt) / den.to(dt)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(num, np.float64) / np.asarray(den, np.float64)


def _dice_compute(tp: ArrayLike, pred_sum: ArrayLike, target_sum: ArrayLike) -> ArrayLike:
    """``2 tp / (|P| + |G|)``; NaN where both are empty (0 / 0)."""
    return _ratio(2 * tp, pred_sum + target_sum)


def _iou_compute(tp: ArrayLike, pred_sum: ArrayLike, target_sum: ArrayLike) -> ArrayLike:
    """``tp / |P ∪ G|``; NaN where both are empty (0 / 0)."""
    return _ratio(tp, pred_sum + target_sum - tp)


def _same_kind(preds: ArrayLike, target: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
    """Both as tensors on ``preds``' device if ``preds`` is a tensor, else both numpy."""
    if isinstance(preds, torch.Tensor):
        t = target if isinstance(target, torch.Tensor) else torch.from_numpy(to_numpy(target, "target"))
        return preds, t.to(preds.device)
    return to_numpy(preds, "preds"), to_numpy(target, "target")


def dice(
    preds: ArrayLike,
    target: ArrayLike,
    *,
    num_classes: int | None = None,
    include_background: bool = True,
) -> ArrayLike:
    """Dice similarity coefficient ``2|P∩G| / (|P| + |G|)``.

    Input forms as in :func:`stat_scores`: a binary mask pair ``(H, W[, D])`` gives a 0-d
    result; a one-hot/binary batch ``(B, C, H, W[, D])`` gives ``(B, C)`` (computed on the
    input's device, cheap enough for validation steps); integer label maps with
    ``num_classes=K`` give one value per class ``(K,)`` or ``(K - 1,)``.

    Empty rule: NaN when prediction and target are both empty (0 / 0, undefined; MONAI and
    MetricsReloaded differ here, see ``docs/metrics.md``); 0 when exactly one is empty.

    Args:
        preds: predicted mask(s) or label map.
        target: reference mask(s) or label map, same shape.
        num_classes: number of classes for label-map input; ``None`` for binary input.
        include_background: keep class 0 (label-map input only).

    Returns:
        Dice in [0, 1] (or NaN), float64 (float32 on MPS); a ``torch.Tensor`` for tensor
        ``preds``, else a ``numpy.ndarray``.

    Raises:
        ValueError: on shape mismatch, non-binary masks or out-of-range labels.
    """
    stats = stat_scores(preds, target, num_classes=num_classes, include_background=include_background)
    return _dice_compute(*stats)


def iou(
    preds: ArrayLike,
    target: ArrayLike,
    *,
    num_classes: int | None = None,
    include_background: bool = True,
) -> ArrayLike:
    """Intersection over union (Jaccard) ``|P∩G| / |P∪G|``.

    Same input forms, output types and empty rule as :func:`dice` (NaN when both are empty).
    """
    stats = stat_scores(preds, target, num_classes=num_classes, include_background=include_background)
    return _iou_compute(*stats)
