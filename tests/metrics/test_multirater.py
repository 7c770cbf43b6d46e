"""Multi-rater metrics: hand values, CRPS against a numerical integral and an independent closed
form written here, calibration of a perfectly calibrated case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from bench.metrics import METRICS, case_metrics, expected_calibration_error
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

# three raters on a 2x3 image, binary labels
LABELS = np.array(
    [
        [[1, 1, 0], [0, 0, 0]],
        [[1, 0, 0], [1, 0, 0]],
        [[1, 1, 1], [0, 0, 0]],
    ]
)


def _crps_integral(mu: float, sigma: float, y: float) -> float:
    """∫ (F(x) − 1{x ≥ y})² dx by quadrature, split at y."""

    def f(x: float) -> float:
        return 0.5 * (1 + math.erf((x - mu) / (sigma * math.sqrt(2))))

    lo, hi = min(mu, y) - 12 * sigma, max(mu, y) + 12 * sigma
    left = integrate.quad(lambda x: f(x) ** 2, lo, y, limit=200)[0]
    right = integrate.quad(lambda x: (f(x) - 1) ** 2, y, hi, limit=200)[0]
    return left + right


def _crps_closed_form(mu: float, sigma: float, y: float) -> float:
    """properscoring's ``crps_gaussian``, written with erf: σ[z·erf(z/√2) + 2φ(z) − 1/√π]."""
    z = (y - mu) / sigma
    pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return sigma * (z * special.erf(z / math.sqrt(2)) + 2 * pdf - 1 / math.sqrt(math.pi))


def test_rater_mean_by_hand() -> None:
    m = rater_mean(LABELS, 2)
    assert m.shape == (2, 2, 3)
    np.testing.assert_allclose(m[1], [[1, 2 / 3, 1 / 3], [1 / 3, 0, 0]])
    np.testing.assert_allclose(m.sum(0), 1.0)


def test_ece_soft_perfect_and_by_hand() -> None:
    soft = rater_mean(LABELS, 2)
    assert ece_soft(soft, soft) == pytest.approx(0.0, abs=1e-12)
    prob = np.stack([np.full((2, 3), 0.2), np.full((2, 3), 0.8)])  # conf 0.8 everywhere, class 1
    acc = soft[1].mean()  # fraction of raters agreeing with class 1, mean over voxels = 5/18
    assert ece_soft(prob, soft, bins=10) == pytest.approx(abs(0.8 - acc))
    one = LABELS[:1]  # one rater: the ordinary top-label ECE
    rng = np.random.default_rng(0)
    fg = rng.random((2, 3))
    p = np.stack([1 - fg, fg])
    assert ece_soft(p, rater_mean(one, 2), bins=10) == pytest.approx(
        expected_calibration_error(p, one[0], n_bins=10)
    )


def test_ece_raters_is_the_mean_of_per_rater_ece_and_bounds_ece_soft() -> None:
    rng = np.random.default_rng(2)
    fg = rng.random((2, 3))
    p = np.stack([1 - fg, fg])
    per = []
    for r in range(3):  # top-label ECE by hand: one bin per voxel here (distinct confidences)
        conf, top = p.max(0), p.argmax(0)
        edges = np.linspace(0, 1, 51)
        b = np.searchsorted(edges, conf, side="right") - 1
        gaps = [abs(((top == LABELS[r]) - conf)[b == i].sum()) for i in np.unique(b)]
        per.append(sum(gaps) / conf.size)
    assert ece_raters(p, LABELS) == pytest.approx(np.mean(per))
    assert ece_soft(p, rater_mean(LABELS, 2), bins=50) <= ece_raters(p, LABELS) + 1e-12


def test_volume_distribution_poisson_binomial() -> None:
    p = np.array([[0.5, 1.0], [0.0, 0.25]])
    mean, var = volume_distribution(p, spacing=(2.0, 1.5))
    assert mean == pytest.approx(3.0 * 1.75)
    assert var == pytest.approx(9.0 * (0.25 + 0 + 0 + 0.1875))
    probs = [0.5, 1.0, 0.0, 0.25]  # exact Poisson-binomial pmf by convolution
    pmf = np.array([1.0])
    for q in probs:
        pmf = np.convolve(pmf, [1 - q, q])
    k = np.arange(pmf.size)
    assert volume_distribution(p)[0] == pytest.approx((k * pmf).sum())
    assert volume_distribution(p)[1] == pytest.approx(((k - (k * pmf).sum()) ** 2 * pmf).sum())


@pytest.mark.parametrize(("mu", "sigma", "y"), [(10.0, 2.0, 13.0), (0.0, 1.0, 0.0), (5.0, 0.5, -1.0)])
def test_crps_gaussian_against_integral_and_closed_form(mu: float, sigma: float, y: float) -> None:
    assert crps_gaussian(mu, sigma, y) == pytest.approx(_crps_integral(mu, sigma, y), rel=1e-6, abs=1e-9)
    assert crps_gaussian(mu, sigma, y) == pytest.approx(_crps_closed_form(mu, sigma, y), rel=1e-9)
    assert crps_gaussian(mu, 0.0, y) == abs(y - mu)


def test_crps_volume_curvas_orientation() -> None:
    prob = np.array([[0.5, 0.5, 1.0], [0.0, 0.0, 1.0]])  # Σp = 3
    vols = rater_volumes(LABELS, 1, spacing=(1.0, 2.0))  # counts 2, 2, 3 -> volumes 4, 4, 6
    np.testing.assert_allclose(vols, [4.0, 4.0, 6.0])
    mu, sigma = 14 / 3, float(np.sqrt(np.mean((np.array([4, 4, 6]) - 14 / 3) ** 2)))
    assert crps_volume(prob, vols, spacing=(1.0, 2.0)) == pytest.approx(
        _crps_integral(mu, sigma, 6.0), rel=1e-6
    )
    assert crps_volume(prob, [6.0, 6.0], spacing=(1.0, 2.0)) == 0.0  # raters agree with Σp·v
    assert crps_volume(prob, [2.0, 2.0]) == 1.0  # σ = 0: |3 − 2|


def test_crps_volume_predictive() -> None:
    prob = np.array([[0.5, 0.5, 1.0], [0.2, 0.0, 1.0]])
    mu, var = 3.2, 0.25 + 0.25 + 0.16
    ys = [2.0, 3.0, 5.0]
    expected = np.mean([_crps_integral(mu, math.sqrt(var), y) for y in ys])
    assert crps_volume_predictive(prob, ys) == pytest.approx(expected, rel=1e-6)
    exact = (prob > 0.4).astype(float)  # σ = 0: mean |y − μ|
    assert crps_volume_predictive(exact, ys) == pytest.approx(np.mean([abs(y - 4.0) for y in ys]))


def test_dice_to_consensus_and_unanimous() -> None:
    # majority (>= 2 of 3): (0,0), (0,1)
    pred = np.array([[1, 0, 0], [1, 0, 0]], bool)
    assert dice_to_consensus(pred, LABELS) == pytest.approx(2 * 1 / (2 + 2))
    even = LABELS[:2]  # two raters: (0,1) and (1,0) are 1-1 ties -> background; consensus {(0,0)}
    assert dice_to_consensus(pred, even) == pytest.approx(2 * 1 / (2 + 1))
    assert math.isnan(dice_to_consensus(np.zeros((2, 3), bool), np.zeros((3, 2, 3), int)))
    # unanimous: fg {(0,0)}, disagreement at (0,1), (0,2), (1,0) is removed from the prediction
    assert consensus_dice(pred, LABELS) == pytest.approx(1.0)
    pred2 = pred.copy()
    pred2[1, 2] = True  # a false positive where all raters say background counts
    assert consensus_dice(pred2, LABELS) == pytest.approx(2 / 3)
    assert math.isnan(consensus_dice(pred, even * 0))


def test_protocol_metrics_are_registered_but_never_computed_by_case_metrics() -> None:
    protocol = {"noc85", "noc90", "dice_at_1", "dice_at_3", "dice_at_5", "crps_volume", "ece_raters"}
    protocol |= {"dice_consensus", "dice_unanimous", "ece_rater_mean", "crps_volume_predictive"}
    assert all(METRICS[k].protocol in ("interactive", "multirater") for k in protocol)
    assert not METRICS["noc90"].higher_is_better and METRICS["noc90"].worst == 20
    assert METRICS["noc85"].fn([0.5, 0.9]) == 2 and METRICS["dice_at_3"].fn([0.1, 0.2, 0.3]) == 0.3
    gt = LABELS[0]
    row = case_metrics(np.stack([1 - gt, gt]).astype(float), gt)
    assert not protocol & set(row)
