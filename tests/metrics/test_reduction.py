"""The one reduction over cases: hand-computed values, the NaN / inf rules, and the metric
registry's directions that every consumer reads."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from bench.metrics import case_metrics, objective_value, reduce_cases, reduce_values
from bench.metrics.registry import METRICS, higher_is_better, metric_info


def test_reduction_matches_the_statistics_module() -> None:
    values = [0.2, 0.9, 0.4, 0.7, 0.55]
    r = reduce_values(values)
    assert r["mean"] == pytest.approx(statistics.fmean(values))
    assert r["std"] == pytest.approx(statistics.stdev(values))  # sample std, ddof=1
    assert r["median"] == pytest.approx(statistics.median(values))
    assert (r["n"], r["n_nan"], r["n_inf"]) == (5, 0, 0)


def test_nan_is_left_out_and_counted_inf_is_kept() -> None:
    r = reduce_values([1.0, math.nan, 3.0, math.inf])
    assert (r["n"], r["n_nan"], r["n_inf"]) == (3, 1, 1)
    assert r["mean"] == math.inf and r["std"] == math.inf
    assert r["median"] == 3.0  # median of [1, 3, inf]
    empty = reduce_values([math.nan, None])
    assert empty["n"] == 0 and empty["n_nan"] == 2 and math.isnan(empty["mean"])
    one = reduce_values([0.5])
    assert one["std"] == 0.0


def test_a_missed_structure_never_improves_a_score() -> None:
    """HD95 = inf for a missed structure: the tuning objective must get worse, not better."""
    good = [{"case_id": "a", "hd95": 2.0}, {"case_id": "b", "hd95": 4.0}]
    missed = [{"case_id": "a", "hd95": 2.0}, {"case_id": "b", "hd95": math.inf}]
    assert objective_value(good, "hd95") == 3.0
    assert objective_value(missed, "hd95") == math.inf > objective_value(good, "hd95")
    assert objective_value([{"case_id": "a", "dice": math.nan}], "dice") == 0.0  # undefined: worst


def test_records_and_objective_share_the_reduction() -> None:
    rows = [{"case_id": "a", "dice": 0.5, "hd95": 1.0}, {"case_id": "b", "dice": math.nan, "hd95": math.inf}]
    agg = reduce_cases(rows)
    assert agg["dice"]["mean"] == 0.5 and agg["dice"]["n_nan"] == 1
    assert agg["hd95"]["mean"] == math.inf and agg["hd95"]["n_inf"] == 1
    assert objective_value(rows, "dice") == agg["dice"]["mean"]
    assert objective_value(rows, "hd95") == agg["hd95"]["mean"]


def test_directions_come_from_the_registry() -> None:
    assert higher_is_better("dice") and higher_is_better("cldice") and higher_is_better("nsd")
    for key in ("betti0_err", "betti1_err", "hd95", "ece", "brier", "betti1_err_patch"):
        assert not higher_is_better(key), key
    assert metric_info("dice_2").higher_is_better and not metric_info("hd95_1").higher_is_better
    with pytest.raises(KeyError, match="unknown metric"):
        metric_info("accuracy")
    assert set(METRICS) >= {"dice", "iou", "cldice", "hd95", "nsd", "ece", "brier"}


def test_case_metrics_only_returns_registered_metrics() -> None:
    from bench.metrics import MetricSettings
    from bench.metrics.registry import is_metric

    g = np.zeros((16, 16), dtype=np.int64)
    g[4:10, 4:10] = 1
    prob = np.stack([1.0 - g, g.astype(float)])
    row = case_metrics(prob, g, settings=MetricSettings(betti_patch=8))
    assert all(is_metric(k) for k in row), [k for k in row if not is_metric(k)]
