"""The leaderboard's interval of a row mean: coverage by simulation of the crossed seed × case model,
and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.leaderboard.intervals import group_units, mean_interval, t_quantile
from bench.leaderboard.stats import mean_ci

N_DATASETS = 600
INTERACTION = 0.3  # share of the non-seed variance that is seed × case interaction (our records: 0.1-0.4)


def _simulate(share: float, n_cases: int, rng: np.random.Generator, n_seeds: int = 3) -> np.ndarray:
    """One ``(seeds, cases)`` data set of the crossed model with total variance 1 and mean 0."""
    va, vb, ve = share, (1 - share) * (1 - INTERACTION), (1 - share) * INTERACTION
    return (
        math.sqrt(va) * rng.standard_normal((n_seeds, 1))
        + math.sqrt(vb) * rng.standard_normal((1, n_cases))
        + math.sqrt(ve) * rng.standard_normal((n_seeds, n_cases))
    )


def _coverage(interval, share: float, n_cases: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(N_DATASETS):
        lo, hi = interval(_simulate(share, n_cases, rng))
        hits += lo <= 0.0 <= hi
    return hits / N_DATASETS


def _printed(y: np.ndarray) -> tuple[float, float]:
    iv = mean_interval(y)
    return iv.lo, iv.hi


def _two_level_bootstrap(y: np.ndarray) -> tuple[float, float]:
    iv = mean_ci(y, n_resamples=400)
    return iv.lo, iv.hi


CELLS = [(share, cases) for share in (0.0, 0.2, 0.5) for cases in (8, 32)]


@pytest.mark.parametrize(("share", "n_cases"), CELLS)
def test_the_printed_interval_covers_with_three_seeds(share, n_cases):
    cover = _coverage(_printed, share, n_cases, seed=int(100 * share) + n_cases)
    assert 0.92 <= cover <= 0.98, cover


def test_the_two_level_bootstrap_does_not_cover_when_seeds_matter():
    # what the table printed before: the same check fails for it (the test can tell them apart)
    cover = _coverage(_two_level_bootstrap, 0.5, 8, seed=58)
    assert cover < 0.92, cover


def test_crossed_interval_by_hand():
    y = np.array([[1.0, 2.0, 4.0], [2.0, 2.0, 5.0]])
    # grand mean 16/6; seed means 7/3, 3; case means 1.5, 2, 4.5
    m = 16 / 6
    ms_seed = 3 * ((7 / 3 - m) ** 2 + (3 - m) ** 2) / 1
    ms_case = 2 * ((1.5 - m) ** 2 + (2 - m) ** 2 + (4.5 - m) ** 2) / 2
    res = y - np.array([[7 / 3], [3]]) - np.array([[1.5, 2, 4.5]]) + m
    ms_res = (res**2).sum() / 2
    var = ms_seed + ms_case - ms_res
    df = var**2 / (ms_seed**2 / 1 + ms_case**2 / 2 + ms_res**2 / 2)
    df = min(df, 1.0 if ms_seed >= ms_case else 2.0)
    half = stats.t.ppf(0.975, df) * math.sqrt(var / 6)
    iv = mean_interval(y)
    assert iv.design == "crossed" and iv.n_runs == 2 and iv.n_units == 3
    assert iv.mean == pytest.approx(m)
    assert (iv.lo, iv.hi) == pytest.approx((m - half, m + half))
    assert iv.seed_sd == pytest.approx(math.sqrt(max((ms_seed - ms_res) / 3, 0)))


def test_nested_and_single_run_designs():
    # each seed tested on its own cases (held out by seed): t over the run means
    y = np.array([[1.0, 3.0, np.nan, np.nan, np.nan], [np.nan, np.nan, 4.0, 6.0, np.nan]])
    iv = mean_interval(y)
    means = np.array([2.0, 5.0])
    half = stats.t.ppf(0.975, 1) * means.std(ddof=1) / math.sqrt(2)
    assert iv.design == "nested" and (iv.lo, iv.hi) == pytest.approx((3.5 - half, 3.5 + half))
    one = mean_interval(np.array([[1.0, 2.0, 6.0]]))
    half = stats.t.ppf(0.975, 2) * np.std([1.0, 2.0, 6.0], ddof=1) / math.sqrt(3)
    assert one.design == "units" and one.ignores_training_noise
    assert (one.lo, one.hi) == pytest.approx((3.0 - half, 3.0 + half))


def test_groups_are_averaged_into_units():
    y = np.array([[1.0, 3.0, 10.0], [2.0, 4.0, 12.0]])
    groups = {"a_left": "a", "a_right": "a", "b_left": "b"}
    units, names = group_units(y, ["a_left", "a_right", "b_left"], groups)
    assert names == ["a", "b"]
    np.testing.assert_array_equal(units, [[2.0, 10.0], [3.0, 12.0]])
    assert mean_interval(units).n_units == 2


def test_infinite_values_give_an_infinite_mean():
    iv = mean_interval(np.array([[1.0, math.inf], [2.0, 3.0]]))
    assert iv.mean == math.inf and iv.lo == math.inf and iv.hi == math.inf


def test_the_t_quantile_is_scipys_to_the_bit():
    rng = np.random.default_rng(4)
    for df in [1, 2, 3, 7, 31, 1000, *rng.uniform(0.5, 60, 200)]:
        for q in (0.95, 0.975):
            assert t_quantile(q, df) == float(stats.t.ppf(q, df))
