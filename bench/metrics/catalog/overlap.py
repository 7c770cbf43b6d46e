"""Dice and IoU of one class, from one shared count of |P ∩ G|, |P| and |G|."""

from __future__ import annotations

import numpy as np

from bench.metrics.context import ClassContext
from bench.metrics.functional import _dice_compute, _iou_compute
from bench.metrics.registry import register_metric

_EMPTY = "both empty: NaN; one empty: 0"


def _counts(ctx: ClassContext) -> tuple[int, int, int]:
    """``(|P ∩ G|, |P|, |G|)`` of the class, counted once per class."""

    def count() -> tuple[int, int, int]:
        tp = np.count_nonzero(ctx.pred & ctx.target)
        return tp, np.count_nonzero(ctx.pred), np.count_nonzero(ctx.target)

    return ctx.memo("overlap_counts", count)


@register_metric(
    "dice",
    higher_is_better=True,
    worst=0.0,
    bounds=(0.0, 1.0),
    description="Dice similarity coefficient",
    empty=_EMPTY,
    position=10,
)
def _dice(ctx: ClassContext) -> float:
    return float(_dice_compute(*_counts(ctx)))


@register_metric(
    "iou",
    higher_is_better=True,
    worst=0.0,
    bounds=(0.0, 1.0),
    description="intersection over union (Jaccard)",
    empty=_EMPTY,
    position=20,
)
def _iou(ctx: ClassContext) -> float:
    return float(_iou_compute(*_counts(ctx)))
