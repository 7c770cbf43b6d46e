"""Segmentation metrics: pure functions (``functional``), ``evaluate_case`` and thin
accumulators. See ``docs/metrics.md`` for definitions and empty-mask rules."""

from bench.metrics.accumulators import CalibrationAccumulator, CaseMetrics, DiceAccumulator
from bench.metrics.case import evaluate_case
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
from bench.metrics.registry import METRICS, MetricInfo, higher_is_better, is_metric, metric_info

__all__ = [
    "METRICS",
    "MetricInfo",
    "Reduction",
    "higher_is_better",
    "is_metric",
    "metric_info",
    "objective_value",
    "reduce_cases",
    "reduce_values",
    "CalibrationAccumulator",
    "CaseMetrics",
    "DiceAccumulator",
    "betti_errors",
    "betti_numbers",
    "brier_score",
    "calibration_stats",
    "cldice",
    "dice",
    "evaluate_case",
    "expected_calibration_error",
    "hd95",
    "iou",
    "normalized_surface_dice",
    "reliability_diagram",
    "stat_scores",
    "surface_distances",
]
