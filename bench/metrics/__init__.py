"""Segmentation metrics: pure functions (``functional``), the registered per-case metrics
(``catalog/``, computed by ``case_metrics``), their settings and a thin accumulator.
See ``docs/metrics.md`` for definitions, empty-mask rules and how to add a metric."""

from bench.metrics import catalog  # noqa: F401  (registers every metric of catalog/)
from bench.metrics.accumulators import DiceAccumulator
from bench.metrics.case import case_metrics, case_row
from bench.metrics.context import CaseContext, ClassContext
from bench.metrics.functional import (
    betti_errors,
    betti_numbers,
    brier_score,
    calibration_stats,
    cldice,
    dice,
    expected_calibration_error,
    hd95,
    iou,
    normalized_surface_dice,
    reliability_diagram,
    stat_scores,
    surface_distances,
)
from bench.metrics.reduction import Reduction, objective_value, reduce_cases, reduce_values
from bench.metrics.registry import (
    METRICS,
    MetricInfo,
    higher_is_better,
    is_metric,
    metric_info,
    register_metric,
)
from bench.metrics.settings import MetricSettings

__all__ = [
    "METRICS",
    "CaseContext",
    "ClassContext",
    "DiceAccumulator",
    "MetricInfo",
    "MetricSettings",
    "Reduction",
    "betti_errors",
    "betti_numbers",
    "brier_score",
    "calibration_stats",
    "case_metrics",
    "case_row",
    "cldice",
    "dice",
    "expected_calibration_error",
    "hd95",
    "higher_is_better",
    "is_metric",
    "iou",
    "metric_info",
    "normalized_surface_dice",
    "objective_value",
    "reduce_cases",
    "reduce_values",
    "register_metric",
    "reliability_diagram",
    "stat_scores",
    "surface_distances",
]
