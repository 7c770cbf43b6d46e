"""The metric registry: what a registration carries, how a file in catalog/ is found, and the
contributor test (a metric with a setting of its own, added with nothing else edited)."""

from __future__ import annotations

import math
import pkgutil
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from bench.metrics import (
    METRICS,
    ClassContext,
    MetricSettings,
    case_metrics,
    catalog,
    metric_info,
    reduce_cases,
    register_metric,
)

BUILT_IN = (
    "dice",
    "iou",
    "cldice",
    "betti0_err",
    "betti1_err",
    "betti2_err",
    "betti0_err_patch",
    "betti1_err_patch",
    "betti2_err_patch",
    "hd95",
    "nsd",
    "ece",
    "brier",
)


def test_every_module_of_the_catalog_is_imported() -> None:
    names = [m.name for m in pkgutil.iter_modules(catalog.__path__)]
    assert names and all(f"bench.metrics.catalog.{n}" in sys.modules for n in names)


def test_built_in_registrations_in_row_order() -> None:
    assert tuple(METRICS)[: len(BUILT_IN)] == BUILT_IN
    for info in METRICS.values():
        assert callable(info.fn) and info.description and info.empty, info.name
    assert METRICS["nsd"].settings == ("nsd_tolerance",) and METRICS["nsd"].uses_spacing
    assert METRICS["ece"].needs_probabilities and METRICS["ece"].per_class_key is None
    assert METRICS["betti2_err"].ndims == (3,) and METRICS["cldice"].deferred
    assert METRICS["betti0_err_patch"].requires == "betti_patch"


def test_per_class_keys_follow_the_registered_pattern() -> None:
    assert metric_info("dice_2").name == "dice_2" and metric_info("dice_2").higher_is_better
    assert metric_info("betti1_err_patch_3").worst == math.inf
    with pytest.raises(KeyError, match="unknown metric"):
        metric_info("ece_1")  # one value per case: no per-class keys


def test_a_name_or_a_new_setting_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_metric("dice", higher_is_better=True, worst=0.0, description="x", empty="x")(len)
    meta = {"higher_is_better": True, "worst": 0.0, "description": "toy", "empty": "toy"}
    try:
        register_metric("toy_a", **meta, new_settings={"toy_s": 1})(len)
        with pytest.raises(ValueError, match="declared by another metric"):
            register_metric("toy_b", **meta, new_settings={"toy_s": 2})(len)
    finally:
        METRICS.pop("toy_a")
    assert "toy_b" not in METRICS


# ---- the contributor test: this block is what a new file in bench/metrics/catalog/ holds ----


def toy_volume_error(preds: np.ndarray, target: np.ndarray, *, scale: float) -> float:
    """``scale * | |P| - |G| |`` of two ``(H, W[, D])`` bool masks (0 when both are empty)."""
    return scale * abs(int(np.count_nonzero(preds)) - int(np.count_nonzero(target)))


@pytest.fixture
def toy_metric() -> Iterator[str]:
    @register_metric(
        "toy_volume_error",
        higher_is_better=False,
        worst=math.inf,
        description="scaled absolute volume difference (a toy)",
        empty="both empty: 0",
        new_settings={"toy_scale": 1.0},
    )
    def _toy(ctx: ClassContext, *, toy_scale: float) -> float:
        return toy_volume_error(ctx.pred, ctx.target, scale=toy_scale)

    try:
        yield "toy_volume_error"
    finally:
        METRICS.pop("toy_volume_error")


def test_an_added_metric_with_a_setting_reaches_rows_and_the_reduction(toy_metric: str) -> None:
    gt = np.zeros((12, 12), np.int64)
    gt[2:6, 2:6] = 1
    gt[7:10, 7:11] = 2
    pred = gt.copy()
    pred[2, 2:6] = 0  # class 1 loses 4 voxels

    row = case_metrics(pred, gt)
    assert list(row)[-3:] == ["toy_volume_error_1", "toy_volume_error_2", "toy_volume_error"]
    assert (row["toy_volume_error_1"], row["toy_volume_error_2"], row["toy_volume_error"]) == (4.0, 0.0, 2.0)
    assert metric_info("toy_volume_error_1").higher_is_better is False

    settings = MetricSettings.from_mapping({"toy_scale": 0.5, "nsd_tolerance": 2.0, "save_predictions": 1})
    assert settings.get("toy_scale") == 0.5 and settings.nsd_tolerance == 2.0
    scaled = case_metrics(pred, gt, settings=settings)
    assert scaled["toy_volume_error_1"] == 2.0

    rows = [{"case_id": "a", **row}, {"case_id": "b", **case_metrics(gt, gt)}]
    agg = reduce_cases(rows)
    assert agg["toy_volume_error"]["mean"] == 1.0 and agg["toy_volume_error_1"]["median"] == 2.0

    before = [k for k in row if not k.startswith("toy")]
    assert list(case_metrics(pred, gt, settings=MetricSettings())) == [*before, *list(row)[-3:]]


def test_the_added_metric_is_gone_afterwards() -> None:
    gt = np.zeros((8, 8), np.int64)
    gt[2:5, 2:5] = 1
    assert not any(k.startswith("toy") for k in case_metrics(gt, gt))
    with pytest.raises(ValueError, match="unknown metric setting"):
        MetricSettings(extra={"toy_scale": 2.0})
    assert MetricSettings.from_mapping({"toy_scale": 2.0}) == MetricSettings()  # not a setting any more
