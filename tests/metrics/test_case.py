"""case_metrics contract, its settings and old keywords, and a property-based robustness test."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from metric_shapes import crossing_vessels_2d, vessel_3d

from bench.metrics import (
    MetricSettings,
    case_metrics,
    cldice,
    dice,
    expected_calibration_error,
    hd95,
)

BASE_2D = {"dice", "iou", "cldice", "betti0_err", "betti1_err", "hd95", "nsd"}


def _probs(labels: np.ndarray, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(c, *labels.shape)) + 3 * np.eye(c)[labels].transpose(-1, *range(labels.ndim))
    e = np.exp(logits)
    return (e / e.sum(0)).astype(np.float32)


def test_binary_2d_keys_and_values():
    gt = crossing_vessels_2d().astype(np.int64)
    prob = _probs(gt, 2)
    out = case_metrics(prob, gt, settings=MetricSettings(betti_patch=16))
    patch_keys = {"betti0_err_patch", "betti1_err_patch"}
    assert set(out) == BASE_2D | {"ece", "brier"} | patch_keys
    assert all(isinstance(v, float) for v in out.values())
    pred = prob.argmax(0)
    assert out["dice"] == pytest.approx(float(dice(pred == 1, gt == 1)))
    assert out["cldice"] == pytest.approx(cldice(pred == 1, gt == 1))
    assert out["ece"] == pytest.approx(expected_calibration_error(prob[1], gt))
    assert set(case_metrics(pred, gt)) == BASE_2D  # label map: no calibration keys


def test_binary_3d_has_betti2_and_uses_spacing():
    gt = vessel_3d(16).astype(np.int64)
    pred = np.roll(gt, 1, axis=1)
    out = case_metrics(torch.as_tensor(pred), torch.as_tensor(gt), spacing=(1.0, 2.0, 1.0))
    assert set(out) == BASE_2D | {"betti2_err"}
    assert out["hd95"] == pytest.approx(hd95(pred, gt, spacing=(1.0, 2.0, 1.0)))


def test_torch_bfloat16_probabilities_like_numpy():
    gt = crossing_vessels_2d(16).astype(np.int64)
    prob = torch.as_tensor(_probs(gt, 2))
    a = case_metrics(prob.to(torch.bfloat16), torch.as_tensor(gt))
    b = case_metrics(prob.to(torch.bfloat16).float().numpy(), gt)
    assert a == b


def test_multiclass_keys_are_per_class_plus_mean():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 3, (12, 12, 12))
    out = case_metrics(_probs(gt, 3), gt)
    assert {"dice_1", "dice_2", "dice", "betti2_err_1", "ece", "brier"} <= set(out)
    assert "dice_0" not in out and "ece_1" not in out
    assert out["dice"] == pytest.approx((out["dice_1"] + out["dice_2"]) / 2)
    with_bg = case_metrics(gt, gt, include_background=True)
    assert with_bg["dice_0"] == 1.0


def test_label_map_num_classes_fixes_keys():
    gt = np.zeros((8, 8), int)
    gt[2:4, 2:4] = 1
    assert "dice_2" not in case_metrics(gt, gt)  # inferred C = 2
    out = case_metrics(gt, gt, num_classes=3)
    assert out["dice_1"] == 1.0 and np.isnan(out["dice_2"]) and out["dice"] == 1.0
    with pytest.raises(ValueError, match="prob_or_pred"):
        case_metrics(gt * 3, gt, num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        case_metrics(_probs(gt, 2), gt, num_classes=3)


def test_multiclass_mean_skips_nan_class():
    gt = np.zeros((10, 10), int)
    gt[2:5, 2:5] = 1
    prob = np.zeros((3, 10, 10), np.float32)
    prob[0], prob[1] = gt == 0, gt == 1  # class 2 absent from prediction and truth
    out = case_metrics(prob, gt)
    assert np.isnan(out["dice_2"]) and out["dice_1"] == 1.0
    assert out["dice"] == 1.0  # NaN classes are skipped in the mean


def test_fov_sets_outside_to_background():
    gt = np.zeros((16, 16), int)
    gt[4:8, 4:8] = 1
    pred = gt.copy()
    pred[0:2, 0:2] = 1  # false positive outside the FOV
    fov = np.zeros((16, 16), bool)
    fov[3:, 3:] = True
    assert case_metrics(pred, gt, fov=fov)["dice"] == 1.0
    assert case_metrics(pred, gt)["dice"] < 1.0
    prob = _probs(gt, 2)
    out = case_metrics(prob, gt, fov=fov)
    assert out["ece"] == pytest.approx(expected_calibration_error(prob[1][fov], gt[fov]))


def test_empty_case():
    z = np.zeros((8, 8), int)
    out = case_metrics(z, z)
    assert np.isnan(out["dice"]) and np.isnan(out["cldice"]) and np.isnan(out["hd95"])
    assert out["betti0_err"] == 0.0


@pytest.mark.parametrize(
    ("x", "gt", "match"),
    [
        (np.full((2, 4, 4), np.nan, np.float32), np.zeros((4, 4), int), "prob_or_pred"),
        (np.full((2, 4, 4), 1.5, np.float32), np.zeros((4, 4), int), r"\[0, 1\]"),
        (np.full((2, 4, 5), 0.5, np.float32), np.zeros((4, 4), int), "same shape"),
        (np.full((1, 4, 4), 1.0, np.float32), np.zeros((4, 4), int), "C >= 2"),
        (np.full((2, 4, 4), 0.5, np.float32), np.full((4, 4), 2), "gt"),
        (np.zeros((4,), int), np.zeros((4,), int), "gt"),
    ],
)
def test_case_metrics_validation(x, gt, match):
    with pytest.raises(ValueError, match=match):
        case_metrics(x, gt)


def test_settings_reach_their_metrics():
    gt = crossing_vessels_2d(24).astype(np.int64)
    pred = np.roll(gt, 2, axis=0)
    prob = _probs(gt, 2)
    base = case_metrics(pred, gt)
    tight = case_metrics(pred, gt, settings=MetricSettings(nsd_tolerance=0.0))
    assert tight["nsd"] < base["nsd"] and tight == {**base, "nsd": tight["nsd"]}
    coarse = case_metrics(prob, gt, settings=MetricSettings(n_bins=2))
    assert coarse["ece"] == expected_calibration_error(prob[1], gt, n_bins=2) != case_metrics(prob, gt)["ece"]
    with_patch = case_metrics(pred, gt, settings=MetricSettings(betti_patch=(8, 12)))
    assert {"betti0_err_patch", "betti1_err_patch"} <= set(with_patch)
    assert "betti2_err_patch" not in with_patch  # 2D


def test_unknown_keywords_are_refused():
    gt = crossing_vessels_2d(16).astype(np.int64)
    with pytest.raises(TypeError):
        case_metrics(gt, gt, betti_patch=8)  # settings travel as one MetricSettings


def test_betti_patch_is_checked_against_the_image_before_any_work():
    gt = np.zeros((8, 8), int)
    with pytest.raises(ValueError, match="per axis"):
        case_metrics(gt, gt, settings=MetricSettings(betti_patch=(2, 2, 2)))


def test_settings_from_a_config_mapping():
    s = MetricSettings.from_mapping({"betti_patch": [32, 32], "nsd_tolerance": 1.5, "save_predictions": 2})
    assert s == MetricSettings(betti_patch=(32, 32), nsd_tolerance=1.5)
    assert MetricSettings.from_mapping({}) == MetricSettings()
    assert hash(s) == hash(MetricSettings(betti_patch=(32, 32), nsd_tolerance=1.5))


def test_parallel_off_gives_the_same_row():
    gt = crossing_vessels_2d(16).astype(np.int64)
    prob = _probs(gt, 2)
    assert case_metrics(prob, gt, parallel=False) == case_metrics(prob, gt)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ndim=st.sampled_from([2, 3]),
    side=st.integers(1, 7),
    classes=st.integers(2, 3),
    form=st.sampled_from(["valid_prob", "any_prob", "labels"]),
    dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.int32, np.int64]),
    spacing=st.none() | st.floats(0.1, 5.0),
    data=st.data(),
)
def test_property_finite_or_documented(ndim, side, classes, form, dtype, spacing, data):
    shape = (side,) * ndim
    gt = data.draw(arrays(np.int64, shape, elements=st.integers(0, classes - 1)))
    fdtype = dtype if np.dtype(dtype).kind == "f" else np.float32
    if form == "labels":
        x = data.draw(arrays(dtype, shape, elements=st.integers(0, classes - 1)))
    else:
        finite = st.floats(0, 1, width=32)
        anything = st.floats(-2, 2, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])
        x = data.draw(
            arrays(fdtype, (classes, *shape), elements=finite if form == "valid_prob" else anything)
        )
    try:
        out = case_metrics(x, gt, settings=MetricSettings(betti_patch=3), spacing=spacing)
    except ValueError as err:
        invalid = form == "any_prob" and not (np.isfinite(x).all() and (x >= 0).all() and (x <= 1).all())
        assert invalid, f"unexpected ValueError: {err}"
        return
    assert form != "any_prob" or ((x >= 0).all() and (x <= 1).all())
    assert ("ece" in out) == (form != "labels")
    for key, v in out.items():
        assert isinstance(v, float), key
        if key.startswith(("betti", "ece", "brier")):
            assert np.isfinite(v) and v >= 0, key
        elif key.startswith(("dice", "iou", "cldice", "nsd")):
            assert np.isnan(v) or 0.0 <= v <= 1.0, key
        else:  # hd95: NaN (both empty), inf (one empty) or a distance
            assert np.isnan(v) or v >= 0, key
