"""Uncertainty and OOD scores against hand values and independent formulas written here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from bench.metrics import case_metrics
from bench.metrics.uncertainty import aurc, auroc, energy, entropy, max_softmax, mutual_information, spearman

# a 2-class 2x2 case: foreground probabilities 0.9, 0.5, 0.2, 1.0
FG = np.array([[0.9, 0.5], [0.2, 1.0]])
PROB = np.stack([1 - FG, FG])


def test_max_softmax_and_entropy_by_hand() -> None:
    assert max_softmax(PROB) == pytest.approx((0.1 + 0.5 + 0.2 + 0.0) / 4)
    h = [-(p * math.log(p) + (1 - p) * math.log(1 - p)) if 0 < p < 1 else 0.0 for p in FG.ravel()]
    assert entropy(PROB) == pytest.approx(sum(h) / 4)
    fov = np.array([[True, True], [False, False]])
    assert max_softmax(PROB, fov=fov) == pytest.approx(0.3)
    assert entropy(PROB, fov=fov) == pytest.approx((h[0] + h[1]) / 2)
    assert math.isnan(entropy(PROB, fov=np.zeros((2, 2), bool)))


def test_entropy_of_uniform_map_is_log_c() -> None:
    for c in (2, 3, 5):
        assert entropy(np.full((c, 3, 3, 2), 1 / c)) == pytest.approx(math.log(c))
        assert max_softmax(np.full((c, 4, 4), 1 / c)) == pytest.approx(1 - 1 / c)


def test_energy_by_hand() -> None:
    logits = np.array([[[1.0, 0.0]], [[2.0, 0.0]]])  # (C=2, 1, 2)
    e = [-math.log(math.exp(1) + math.exp(2)), -math.log(2)]
    assert energy(logits) == pytest.approx(sum(e) / 2)
    e_t = [-2 * math.log(math.exp(0.5) + math.exp(1)), -2 * math.log(2)]
    assert energy(logits, T=2.0) == pytest.approx(sum(e_t) / 2)
    assert energy(logits - 10) > energy(logits)  # lower logits: higher energy, more OOD


def test_mutual_information() -> None:
    assert mutual_information(np.stack([PROB, PROB, PROB])) == pytest.approx(0.0, abs=1e-12)
    a = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 0.0)])  # certain class 0
    b = a[::-1].copy()  # certain class 1
    assert mutual_information(np.stack([a, b])) == pytest.approx(math.log(2))  # H(mean) − 0
    s = np.stack([PROB, np.stack([FG, 1 - FG])])
    mean = s.mean(0)

    def h(p: np.ndarray) -> np.ndarray:
        return -(p * np.log(np.clip(p, 1e-300, None))).sum(0)

    assert mutual_information(s) == pytest.approx(float((h(mean) - (h(s[0]) + h(s[1])) / 2).mean()))


def _aurc_loop(u: list[float], r: list[float]) -> float:
    order = sorted(range(len(u)), key=lambda i: u[i])
    total = 0.0
    for k in range(1, len(u) + 1):
        total += sum(r[i] for i in order[:k]) / k
    return total / len(u)


def test_aurc_by_hand_loop_and_oracle() -> None:
    u, r = [0.3, 0.1, 0.4, 0.2], [0.5, 0.0, 0.2, 0.1]
    # accepted order 0.0, 0.1, 0.5, 0.2: risks at k = 1..4 are 0, 0.05, 0.2, 0.2
    assert aurc(u, r) == pytest.approx((0 + 0.05 + 0.2 + 0.2) / 4)
    assert aurc(u, r) == pytest.approx(_aurc_loop(u, r))
    oracle = aurc(r, r)
    assert oracle == pytest.approx((0 + 0.05 + 0.1 + 0.2) / 4)
    assert all(oracle <= _aurc_loop(list(p), r) + 1e-12 for p in itertools.permutations(u))
    rng = np.random.default_rng(0)
    for _ in range(5):
        uu, rr = rng.random(7), rng.random(7)
        assert aurc(uu, rr) == pytest.approx(_aurc_loop(list(uu), list(rr)))


def test_aurc_ties_are_the_mean_over_tie_orders() -> None:
    u, r = [0.2, 0.1, 0.2, 0.2], [0.9, 0.0, 0.3, 0.0]
    tied = [0, 2, 3]
    values = []
    for perm in itertools.permutations(tied):  # every order of the tied cases, by the loop
        eps = {i: 1e-9 * rank for rank, i in enumerate(perm)}
        values.append(_aurc_loop([u[i] + eps.get(i, 0.0) for i in range(4)], r))
    assert aurc(u, r) == pytest.approx(np.mean(values))
    assert aurc(u[::-1], r[::-1]) == pytest.approx(aurc(u, r))


def test_spearman_hand_cases() -> None:
    assert spearman([0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.5, 0.1]) == pytest.approx(-1.0)
    # ranks u: 1,2,3 ; dice: 2,1,3 -> d = -1, 1, 0 ; rho = 1 - 6*2/(3*8) = 0.5
    assert spearman([1.0, 2.0, 3.0], [0.5, 0.4, 0.9]) == pytest.approx(0.5)


def _auroc_pairs(a: np.ndarray, b: np.ndarray) -> float:
    wins = sum(1.0 if y > x else 0.5 if y == x else 0.0 for x in a for y in b)
    return wins / (len(a) * len(b))


def test_auroc_brute_force_and_mann_whitney() -> None:
    assert auroc([0.1, 0.2], [0.3, 0.4]) == 1.0 and auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert auroc([0.5], [0.5]) == 0.5
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b = rng.integers(0, 5, 9).astype(float), rng.integers(1, 6, 6).astype(float)  # many ties
        assert auroc(a, b) == pytest.approx(_auroc_pairs(a, b))
        assert auroc(a, b) == pytest.approx(mannwhitneyu(b, a).statistic / (len(a) * len(b)))


def test_registered_scores_only_when_asked() -> None:
    gt = (FG > 0.5).astype(np.int64)
    assert not any(k.startswith("unc_") for k in case_metrics(PROB, gt))
    row = case_metrics(PROB, gt, protocols=("segmentation", "uncertainty"))
    assert row["unc_msp"] == pytest.approx(0.2) and row["unc_entropy"] == pytest.approx(entropy(PROB))
    assert "unc_energy" not in row and "unc_mi" not in row
    no_prob = case_metrics(gt, gt, protocols=("segmentation", "uncertainty"))
    assert "unc_msp" not in no_prob
    with pytest.raises(ValueError, match="protocols"):
        case_metrics(PROB, gt, protocols=("interactive",))
