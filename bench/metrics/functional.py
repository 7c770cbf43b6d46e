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

from bench.metrics._convert import ArrayLike, check_labels, check_same_shape
from bench.metrics.calibration import brier_score, expected_calibration_error, reliability_diagram
from bench.metrics.distance import hd95, normalized_surface_dice
from bench.metrics.topology import betti_errors, betti_numbers, cldice

__all__ = [
    "betti_errors",
    "betti_numbers",
    "brier_score",
    "cldice",
    "dice",
    "expected_calibration_error",
    "hd95",
    "iou",
    "normalized_surface_dice",
    "reliability_diagram",
    "stat_scores",
]


def _as_tensor(x: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x if device is None else x.to(device)
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)).to(device or "cpu")
    raise ValueError(f"`{name}` must be a numpy array or torch tensor, got {type(x).__name__}.")


def _binary_tensor(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dtype == torch.bool:
        return x
    if x.is_complex():
        raise ValueError(f"`{name}` must be a real-valued binary mask.")
    if x.numel():
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"`{name}` must be a binary mask with values in {{0, 1}}; got NaN/inf.")
        lo, hi = torch.aminmax(x)
        if lo < 0 or hi > 1 or (x.is_floating_point() and not bool(((x == 0) | (x == 1)).all())):
            raise ValueError(f"`{name}` must be a binary mask with values in {{0, 1}}; got other values.")
    return x != 0


def _count_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def stat_scores(
    preds: ArrayLike,
    target: ArrayLike,
    *,
    num_classes: int | None = None,
    include_background: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
        ``(tp, pred_sum, target_sum)`` as integer tensors on ``preds``' device.

    Raises:
        ValueError: on shape mismatch, non-binary masks or out-of-range labels.
    """
    p = _as_tensor(preds, "preds")
    t = _as_tensor(target, "target", p.device)
    check_same_shape(p, t, "preds", "target")
    if num_classes is None:
        p, t = _binary_tensor(p, "preds"), _binary_tensor(t, "target")
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
    check_labels(p, num_classes, "preds")
    check_labels(t, num_classes, "target")
    k = int(num_classes)
    idx = t.reshape(-1).long() * k + p.reshape(-1).long()
    conf = torch.bincount(idx, minlength=k * k).reshape(k, k)  # rows: target, cols: preds
    tp, pred_sum, target_sum = conf.diagonal(), conf.sum(0), conf.sum(1)
    if not include_background:
        tp, pred_sum, target_sum = tp[1:], pred_sum[1:], target_sum[1:]
    return tp, pred_sum, target_sum


def _dice_compute(tp: torch.Tensor, pred_sum: torch.Tensor, target_sum: torch.Tensor) -> torch.Tensor:
    """``2 tp / (|P| + |G|)``; NaN where both are empty (0 / 0)."""
    dt = _count_dtype(tp.device)
    return 2 * tp.to(dt) / (pred_sum + target_sum).to(dt)


def _iou_compute(tp: torch.Tensor, pred_sum: torch.Tensor, target_sum: torch.Tensor) -> torch.Tensor:
    """``tp / |P ∪ G|``; NaN where both are empty (0 / 0)."""
    dt = _count_dtype(tp.device)
    return tp.to(dt) / (pred_sum + target_sum - tp).to(dt)


def _like_input(value: torch.Tensor, preds: ArrayLike) -> ArrayLike:
    return value if isinstance(preds, torch.Tensor) else value.cpu().numpy()


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

    Empty rule: NaN when prediction and target are both empty (undefined, like MONAI's
    ``ignore_empty``); 0 when exactly one is empty.

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
    return _like_input(_dice_compute(*stats), preds)


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
    return _like_input(_iou_compute(*stats), preds)
