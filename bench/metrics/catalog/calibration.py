"""ECE and Brier score of one case (no per-class keys): the foreground probability against
``gt == 1`` for two classes (torchmetrics' binary form), top-label / multi-class otherwise;
only voxels inside the field of view count."""

from __future__ import annotations

import numpy as np

from bench.metrics.calibration import brier_score, expected_calibration_error
from bench.metrics.context import CaseContext
from bench.metrics.registry import register_metric

_EMPTY = "NaN when the field of view selects no voxel"


def _pair(case: CaseContext) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, truth)``: ``(prob[1], gt)`` for C = 2, else ``(prob, gt)``."""
    assert case.prob is not None
    return (case.prob[1], case.target) if case.num_classes == 2 else (case.prob, case.target)


@register_metric(
    "ece",
    higher_is_better=False,
    worst=1.0,
    bounds=(0.0, 1.0),
    description="expected calibration error",
    empty=_EMPTY,
    settings=("n_bins",),
    needs_probabilities=True,
    per_class=False,
    position=80,
)
def _ece(case: CaseContext, *, n_bins: int) -> float:
    return expected_calibration_error(*_pair(case), n_bins=n_bins, mask=case.fov)


@register_metric(
    "brier",
    higher_is_better=False,
    worst=1.0,
    bounds=(0.0, 2.0),
    description="Brier score",
    empty=_EMPTY,
    needs_probabilities=True,
    per_class=False,
    position=90,
)
def _brier(case: CaseContext) -> float:
    return brier_score(*_pair(case), mask=case.fov)
