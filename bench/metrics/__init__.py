"""Segmentation metrics: pure functions (``functional``), the registered per-case metrics
(``catalog/``, computed by ``case_metrics``), their settings and a thin accumulator, plus the
metrics of the interactive (``interactive``), uncertainty / OOD (``uncertainty``) and
multi-rater (``multirater``) protocols. See ``docs/metrics.md`` for definitions, empty-mask rules
and how to add a metric."""

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
from bench.metrics.interactive import click_maps, dice_after, next_click, noc, simulate_training_clicks
from bench.metrics.multirater import (
    consensus_dice,
    crps_gaussian,
    crps_volume,
    crps_volume_predictive,
    dice_to_consensus,
    ece_raters,
    ece_soft,
    rater_mean,
    rater_volumes,
    volume_distribution,
)
from bench.metrics.reduction import Reduction, objective_value, reduce_cases, reduce_values
from bench.metrics.registry import (
    CASE_PROTOCOLS,
    METRICS,
    MetricInfo,
    higher_is_better,
    is_metric,
    metric_info,
    register_metric,
)
from bench.metrics.settings import MetricSettings
from bench.metrics.uncertainty import (
    aurc,
    auroc,
    energy,
    entropy,
    max_softmax,
    model_ood,
    mutual_information,
    spearman,
)

__all__ = [
    "CASE_PROTOCOLS",
    "METRICS",
    "CaseContext",
    "ClassContext",
    "DiceAccumulator",
    "MetricInfo",
    "MetricSettings",
    "Reduction",
    "aurc",
    "auroc",
    "betti_errors",
    "betti_numbers",
    "brier_score",
    "calibration_stats",
    "case_metrics",
    "case_row",
    "cldice",
    "click_maps",
    "consensus_dice",
    "crps_gaussian",
    "crps_volume",
    "crps_volume_predictive",
    "dice",
    "dice_after",
    "dice_to_consensus",
    "ece_raters",
    "ece_soft",
    "energy",
    "entropy",
    "expected_calibration_error",
    "hd95",
    "higher_is_better",
    "iou",
    "is_metric",
    "max_softmax",
    "model_ood",
    "metric_info",
    "mutual_information",
    "next_click",
    "noc",
    "normalized_surface_dice",
    "objective_value",
    "rater_mean",
    "rater_volumes",
    "reduce_cases",
    "reduce_values",
    "register_metric",
    "reliability_diagram",
    "simulate_training_clicks",
    "spearman",
    "stat_scores",
    "surface_distances",
    "volume_distribution",
]
