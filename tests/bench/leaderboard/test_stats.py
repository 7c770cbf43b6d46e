"""bench.leaderboard.stats against known distributions, hand-computed answers and scipy."""

import math

import numpy as np
import pytest
from scipy import stats as st

from bench.leaderboard import stats, wilcoxon


def test_case_bootstrap_covers_the_true_mean_at_the_nominal_rate():
    rng = np.random.default_rng(0)
    reps, covered = 300, 0
    for r in range(reps):
        x = rng.normal(0.7, 0.1, 40)
        ci = stats.mean_ci(x[None, :], n_resamples=1000, seed=r)
        covered += ci.lo <= 0.7 <= ci.hi
        assert ci.levels == 1
    # the percentile bootstrap slightly under-covers at small n (scipy's gives 0.91 at n = 30)
    assert 0.88 <= covered / reps <= 0.98


def test_case_bootstrap_matches_scipy_percentile_bootstrap():
    x = np.random.default_rng(1).gamma(2.0, 0.1, 25)
    ours = stats.mean_ci(x[None, :], n_resamples=20000, seed=0)
    ref = st.bootstrap((x,), np.mean, method="percentile", n_resamples=20000, rng=0).confidence_interval
    width = ref.high - ref.low
    assert abs(ours.lo - ref.low) < 0.05 * width and abs(ours.hi - ref.high) < 0.05 * width


def _crossed(rng, k, n, sd_seed):
    case = rng.normal(0, 0.1, n)
    return 0.5 + rng.normal(0, sd_seed, (k, 1)) + case[None, :] + rng.normal(0, 0.02, (k, n))


def test_two_level_bootstrap_widens_the_interval_when_seeds_disagree():
    rng = np.random.default_rng(2)
    x = rng.normal(0.7, 0.1, 20)
    same = np.stack([x, x, x])  # three seeds that agree exactly: nothing to add
    one = stats.mean_ci(x[None, :], seed=3)
    three = stats.mean_ci(same, seed=3)
    assert three.levels == 2 and (three.lo, three.hi) == pytest.approx((one.lo, one.hi))
    disagree = same + np.array([[-0.1], [0.0], [0.1]])
    wide = stats.mean_ci(disagree, seed=3)
    pooled = stats.mean_ci(disagree.reshape(1, -1), seed=3)  # cases only, seeds ignored
    assert wide.hi - wide.lo > 2.5 * (pooled.hi - pooled.lo)


def test_two_level_bootstrap_keeps_coverage_where_a_case_bootstrap_loses_it():
    rng = np.random.default_rng(4)
    reps, two, flat = 150, 0, 0
    for r in range(reps):
        x = _crossed(rng, 8, 20, 0.05)  # true mean 0.5 over seeds and cases
        a = stats.mean_ci(x, n_resamples=500, seed=r)
        b = stats.mean_ci(x.reshape(1, -1), n_resamples=500, seed=r)
        two += a.lo <= 0.5 <= a.hi
        flat += b.lo <= 0.5 <= b.hi
    assert two / reps >= 0.85 and flat / reps <= 0.7


def test_ci_of_values_with_an_infinite_case_reaches_infinity():
    x = np.array([[1.0, 2.0, 3.0, math.inf, 2.0, 1.0]])
    ci = stats.mean_ci(x, seed=0)
    assert ci.hi == math.inf and math.isfinite(ci.lo)
    assert math.isnan(stats.mean_ci(np.array([[math.nan, math.nan]])).lo)


@pytest.mark.parametrize("n", [5, 9, 13])
def test_signed_rank_p_is_scipys_exact_and_permutation_p(n):
    rng = np.random.default_rng(n)
    d = rng.normal(0.3, 1.0, n)
    assert wilcoxon.signed_rank_p(d) == pytest.approx(st.wilcoxon(d, method="exact").pvalue, rel=1e-12)
    tied = np.round(rng.normal(0.6, 1.0, n))
    tied[tied == 0] = 1.0
    ref = st.wilcoxon(tied, method=st.PermutationMethod(n_resamples=10**5)).pvalue  # exact: 2^n < 1e5
    assert wilcoxon.signed_rank_p(tied) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("n", [19, 30, 44, 50, 51, 80])
def test_signed_rank_p_above_the_enumeration_limit_is_scipys_to_the_bit(n):
    # scipy's exact null without ties up to 50 differences, its tie-corrected normal approximation
    # otherwise; zeros are dropped first (zero_method="wilcox")
    rng = np.random.default_rng(n)
    for shift in (0.0, 0.15, 0.4, 1.0):
        d = rng.normal(shift, 1.0, n)
        method = "exact" if n <= 50 else "asymptotic"
        assert wilcoxon.signed_rank_p(d) == st.wilcoxon(d, method=method).pvalue
        tied = np.round(rng.normal(shift, 2.0, n))
        tied[tied == 0], tied[:2] = 1.0, 0.0  # ties, and two zeros
        assert wilcoxon.signed_rank_p(tied) == st.wilcoxon(tied[2:], method="asymptotic").pvalue
    assert wilcoxon.signed_rank_p(np.full(n, 0.5)) == st.wilcoxon(np.full(n, 0.5), method="asymptotic").pvalue
    assert wilcoxon.signed_rank_p(np.zeros(5)) == 1.0


@pytest.mark.parametrize("n", [3, 8, 13, 14, 23, 50, 51])
def test_signed_rank_p_with_scipys_auto_rule_is_scipys_default_to_the_bit(n):
    # what claims reports: zeros count in n and, like ties, leave the exact null (README quotes it)
    rng = np.random.default_rng(n)
    for case in range(4):
        d = rng.normal(0.2, 1.0, n)
        if case >= 1:
            d[: max(1, n // 8)] = 0.0  # zeros
        if case >= 2:
            d = np.round(d * 2) / 2  # and ties
        if case == 3:
            d[d == 0] = 0.5  # ties only
        if np.any(d != 0):
            assert wilcoxon.signed_rank_p(d, scipy_auto=True) == st.wilcoxon(d).pvalue


def test_signed_rank_p_at_the_null_mean_is_one():
    d = np.r_[np.arange(1.0, 15.0), -np.arange(15.0, 21.0)]  # T+ = 1 + ... + 14 = 105 = 20 * 21 / 4
    assert wilcoxon.signed_rank_p(d) == st.wilcoxon(d, method="exact").pvalue == 1.0


def test_paired_compare_difference_and_bootstrap_ci():
    rng = np.random.default_rng(8)
    a = rng.normal(0.8, 0.05, 15)
    b = a - 0.05 + rng.normal(0, 0.01, 15)
    p = stats.paired_compare(a, b)
    assert p.diff == pytest.approx(np.mean(a - b)) and p.lo < p.diff < p.hi and p.lo > 0
    assert p.p == pytest.approx(st.wilcoxon(a, b, method="exact").pvalue) and p.n == 15
    tied = stats.paired_compare(a, a + rng.normal(0, 1e-4, 15))
    assert tied.p > 0.05 and tied.lo < 0 < tied.hi
    with_nan = stats.paired_compare(np.append(a, math.nan), np.append(b, 0.5))
    assert with_nan.n == 15 and with_nan.n_nan == 1


def test_holm_matches_hand_computed_values():
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(stats.holm([0.01, 0.02, 0.03, 0.5]), [0.04, 0.06, 0.06, 0.5])
    out = stats.holm([0.2, math.nan, 0.01])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_kendall_tau_b_matches_scipy_with_ties():
    rng = np.random.default_rng(9)
    ref = np.array([1, 2, 2, 4, 5, 6.0])
    ranks = rng.integers(1, 7, size=(50, 6)).astype(float)
    ours = stats.kendall_tau_b(ref, ranks)
    for row, t in zip(ranks, ours):
        expected = st.kendalltau(ref, row).statistic
        assert (math.isnan(t) and math.isnan(expected)) or t == pytest.approx(expected)


def test_variance_shares_hand_computed():
    # groups [1,2,3] and [4,5,6]: MSB = 13.5, MSW = 1, n0 = 3 -> between = 12.5 / 3
    seed, case = stats.variance_shares([np.array([1, 2, 3.0]), np.array([4, 5, 6.0])])
    between = 12.5 / 3
    assert seed == pytest.approx(between / (between + 1)) and case == pytest.approx(1 / (between + 1))
    same = stats.variance_shares([np.array([1, 2, 3.0])] * 3)
    assert same == (0.0, 1.0)
    assert all(math.isnan(v) for v in stats.variance_shares([np.array([1, 2, 3.0])]))


def test_rank_then_aggregate_and_aggregate_then_rank_can_disagree():
    # A wins three cases by a little and loses one by a lot: A is first by cases, B by the mean.
    scores = np.array([[0.9, 0.9, 0.9, 0.1], [0.85, 0.85, 0.85, 0.85]])
    assert list(stats.rank_scores(scores.mean(axis=1))) == [2.0, 1.0]
    np.testing.assert_allclose(stats.rank_then_aggregate(scores), [1.25, 1.75])


def test_ranks_use_min_ties_and_nan_is_last():
    np.testing.assert_array_equal(stats.rank_scores(np.array([0.5, 0.9, 0.9, math.nan])), [3, 1, 1, 4])
    np.testing.assert_array_equal(
        stats.rank_scores(stats.signed(np.array([3.0, 1.0, 2.0]), False)), [3, 1, 2]
    )


def test_rank_stability_of_clearly_separated_rows():
    rng = np.random.default_rng(10)
    mats = [rng.normal(m, 0.01, (1, 12)) for m in (0.9, 0.6, 0.3)]
    boot = stats.resampled_means(mats, n_resamples=500, seed=0)
    st_ = stats.rank_stability(np.array([1.0, 2, 3]), stats.rank_scores(boot), seed=0)
    np.testing.assert_array_equal(st_.p_first, [1, 0, 0])
    np.testing.assert_array_equal(st_.lo, [1, 2, 3])
    assert np.all(st_.tau == 1.0) and st_.freq[1, 1] == 1.0


def test_resampled_means_are_paired_over_rows_and_respect_nan_and_inf():
    x = np.array([[0.1, 0.2, 0.3, 0.4]])
    boot = stats.resampled_means([x, x + 1.0], n_resamples=200, seed=0)
    np.testing.assert_allclose(boot[:, 1] - boot[:, 0], 1.0)  # same case draws for both rows
    assert np.all((boot[:, 0] >= 0.1) & (boot[:, 0] <= 0.4))
    withnan = stats.resampled_means([np.array([[1.0, math.nan]])], n_resamples=50, seed=0)[:, 0]
    assert np.all((withnan == 1.0) | np.isnan(withnan))  # a draw of only the NaN case is NaN
    withinf = stats.resampled_means([np.array([[1.0, math.inf]])], n_resamples=50, seed=0)[:, 0]
    assert set(np.unique(withinf)) <= {1.0, math.inf}


def test_combined_rank_is_rank_of_mean_metric_rank():
    scores = np.array([[0.9, -1.0], [0.8, -0.5], [0.7, -0.6]])  # (rows, metrics), higher is better
    # metric ranks: [1,3], [2,1], [3,2] -> means 2, 1.5, 2.5
    np.testing.assert_array_equal(stats.combined_ranks(scores), [2, 1, 3])


def _resampled_means_row_by_row(matrices, n_resamples, seed):
    """The two-level bootstrap one row at a time, as segbench computed it before it was vectorised:
    the case weights first, then each row's run weights in row order, one einsum per sum."""
    rng = np.random.default_rng(seed)

    def counts(idx, size):
        return np.array([np.bincount(row, minlength=size) for row in idx], dtype=np.float64)

    n_cases = matrices[0].shape[1]
    case_w = counts(rng.integers(0, n_cases, size=(n_resamples, n_cases)), n_cases)
    out = np.empty((n_resamples, len(matrices)))
    for r, x in enumerate(matrices):
        n_runs = x.shape[0]
        run_w = counts(rng.integers(0, n_runs, size=(n_resamples, n_runs)), n_runs)
        valid, inf = ~np.isnan(x), np.isinf(x)
        x0 = np.where(valid & ~inf, x, 0.0)
        total = np.einsum("bi,ic,bc->b", run_w, x0, case_w)
        count = np.einsum("bi,ic,bc->b", run_w, valid.astype(np.float64), case_w)
        n_pos = np.einsum("bi,ic,bc->b", run_w, (inf & (x > 0)).astype(np.float64), case_w)
        n_neg = np.einsum("bi,ic,bc->b", run_w, (inf & (x < 0)).astype(np.float64), case_w)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
        mean = np.where(n_pos > 0, math.inf, mean)
        out[:, r] = np.where(n_neg > 0, np.where(n_pos > 0, math.nan, -math.inf), mean)
    return out


@pytest.mark.parametrize("n_cases", [1, 7, 32, 53])
def test_resampled_means_of_every_row_at_once_equal_a_row_by_row_loop_to_the_bit(n_cases):
    rng = np.random.default_rng(n_cases)
    for trial in range(6):
        mats = []
        for _ in range(int(rng.integers(1, 9))):
            x = rng.normal(0.7, 0.2, (int(rng.integers(1, 6)), n_cases)) * 10.0 ** int(rng.integers(-3, 3))
            x[rng.random(x.shape) < 0.1 * (trial % 3)] = math.nan  # missing cases, a fold's other cases
            x[rng.random(x.shape) < 0.03 * (trial % 2)] = math.inf  # HD95 of a missed structure
            x[rng.random(x.shape) < 0.02 * (trial % 2)] = -math.inf
            mats.append(x)
        ours = stats.resampled_means(mats, n_resamples=300, seed=trial)
        np.testing.assert_array_equal(ours, _resampled_means_row_by_row(mats, 300, trial))


def test_kendall_tau_b_equals_its_definition_over_every_pair():
    rng = np.random.default_rng(11)
    for n in (2, 3, 9, 40, 130):
        ref = np.round(rng.normal(size=n), 1)  # ties in the reference
        ranks = stats.rank_scores(np.round(rng.normal(size=(200, n)) + np.linspace(0, 2, n), 1))
        i, j = np.triu_indices(n, k=1)
        s0, s = np.sign(ref[i] - ref[j]), np.sign(ranks[:, i] - ranks[:, j])
        denom = np.sqrt(np.count_nonzero(s0) * np.count_nonzero(s, axis=1).astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = np.where(denom > 0, (s * s0).sum(axis=1) / denom, math.nan)
        np.testing.assert_array_equal(stats.kendall_tau_b(ref, ranks), expected)
    constant = stats.kendall_tau_b(np.ones(4), np.array([[1.0, 2, 3, 4]]))
    assert math.isnan(constant[0])  # no untied pair in the reference


def test_rank_frequencies_count_each_rank_of_each_row():
    rng = np.random.default_rng(12)
    resampled = stats.rank_scores(np.round(rng.normal(size=(300, 7)), 1))  # ties share the best rank
    st_ = stats.rank_stability(np.arange(1.0, 8.0), resampled, seed=0)
    expected = np.stack([(resampled == k + 1).mean(axis=0) for k in range(7)], axis=1)
    np.testing.assert_array_equal(st_.freq, expected)
    np.testing.assert_allclose(st_.freq.sum(axis=1), 1.0)


def test_row_stats_of_many_rows_equal_one_row_at_a_time():
    import dataclasses

    rng = np.random.default_rng(13)

    def same(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, tuple):
            return len(x) == len(y) and all(same(p, q) for p, q in zip(x, y))
        if isinstance(x, float) and math.isnan(x):
            return math.isnan(y)
        return x == y

    for trial in range(60):
        n_runs, n_cases = int(rng.integers(1, 5)), int(rng.integers(1, 35))
        rows = []
        for _ in range(int(rng.integers(1, 7))):
            ids = [f"c{i:02d}" for i in rng.permutation(n_cases)]  # records list cases in any order
            base = rng.normal(0.7, 0.1, n_cases) * 10.0 ** int(rng.integers(-2, 3))
            runs = [dict(zip(ids, (base + rng.normal(0, 0.05, n_cases)).tolist())) for _ in range(n_runs)]
            if rng.random() < 0.15:
                runs[0][ids[0]] = math.nan if rng.random() < 0.5 else math.inf  # one at a time
            if rng.random() < 0.1 and n_runs > 1:
                runs[1] = dict(reversed(list(runs[1].items())))  # another case order: one at a time
            rows.append(runs)
        many = stats.row_stats_many(rows)
        for runs, got in zip(rows, many):
            want = stats.row_stats(runs)
            assert same(dataclasses.astuple(got), dataclasses.astuple(want)), (trial, got, want)
