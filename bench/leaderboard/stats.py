"""Statistics behind the leaderboard: bootstrap intervals, a row's summary, paired tests (with the
one Wilcoxon signed-rank test of segbench, :mod:`bench.leaderboard.wilcoxon`), Holm, rankings and
rank stability.

Pure numpy/scipy on per-case values; nothing here reads records. Conventions:

- A row's values come as one 1D array per run (seed × fold), NaN already excluded (the one
  reduction, :func:`bench.metrics.reduction.reduce_values`, counts them); ``inf`` stays in, so a
  resample that draws an infinite value has an infinite mean.
- Bootstraps are percentile intervals from a seeded ``numpy.random.Generator``; the seed and the
  number of resamples are part of every result.
- Ranks use the ``min`` tie rule (challengeR's default): tied rows share the best of their ranks;
  a row without a value ranks last.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _st

from bench.leaderboard.intervals import (
    MeanInterval,
    crossed_components_many,
    crossed_from_components,
    group_units,
    mean_interval,
)
from bench.leaderboard.wilcoxon import signed_rank_p_inf
from bench.metrics.reduction import Reduction, reduce_values
from bench.metrics.registry import UNBOUNDED

N_RESAMPLES = 2000
CONFIDENCE = 0.95
ALPHA = 0.05
"""Family-wise error rate of the Holm-corrected pairwise tests of one table and metric."""


def _quantiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of ``samples`` (1D); exact sample values when some are infinite."""
    alpha = (1.0 - confidence) / 2.0
    s = samples[~np.isnan(samples)]
    if s.size == 0:
        return math.nan, math.nan
    method = "linear" if np.isfinite(s).all() else "nearest"
    lo, hi = np.quantile(s, [alpha, 1.0 - alpha], method=method)
    return float(lo), float(hi)


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval of a mean."""

    lo: float
    hi: float
    confidence: float
    n_resamples: int
    seed: int
    levels: int  # 2: seeds then cases; 1: cases only


def mean_ci(
    matrix: np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Percentile CI of a row's pooled mean by the two-level bootstrap of :func:`resampled_means`.

    Args:
        matrix: ``(runs, cases)`` values (NaN where a run has no value for a case). With one run
            this is the plain case bootstrap; with several, runs (seeds/folds) are drawn with
            replacement, then cases.
    """
    matrix = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
    matrix = matrix[~np.all(np.isnan(matrix), axis=1)] if matrix.size else matrix
    if matrix.size == 0 or matrix.shape[0] == 0:
        return Interval(math.nan, math.nan, confidence, n_resamples, seed, 1)
    means = resampled_means([matrix], n_resamples=n_resamples, seed=seed)[:, 0]
    lo, hi = _quantiles(means, confidence)
    return Interval(lo, hi, confidence, n_resamples, seed, 2 if matrix.shape[0] > 1 else 1)


@dataclass(frozen=True)
class RowStats:
    """One row and metric: the reduction over all its per-case values, the interval the table prints
    (:func:`bench.leaderboard.intervals.mean_interval`), the seed spread and every registered
    :data:`ROW_STATISTICS` value (``extra``)."""

    reduction: Reduction
    ci: MeanInterval
    n_runs: int
    seed_sd: float  # std (ddof=1) of the per-run means; NaN with one run
    seed_share: float  # share of the variance between runs (NaN with one run)
    case_share: float
    extra: Mapping[str, float] = field(default_factory=dict)


RowStatistic = Callable[[np.ndarray], float]
ROW_STATISTICS: dict[str, RowStatistic] = {}
"""Further statistics of a row and metric: name -> function of the ``(runs, units)`` matrix (NaN:
no value). Each lands in :attr:`RowStats.extra`, the JSON export (``rows[].metrics[m][name]``) and
a CSV column of its own; adding one is this decorator on a function plus its test."""


def row_statistic(name: str) -> Callable[[RowStatistic], RowStatistic]:
    """Register ``fn((runs, units) matrix) -> float`` as the row statistic ``name``."""

    def deco(fn: RowStatistic) -> RowStatistic:
        if name in ROW_STATISTICS:
            raise ValueError(f"row statistic {name!r} is registered twice")
        ROW_STATISTICS[name] = fn
        return fn

    return deco


def row_stats(
    per_run: Sequence[Mapping[str, float]],
    *,
    groups: Mapping[str, str] | None = None,
    bounds: tuple[float, float] = UNBOUNDED,
) -> RowStats:
    """Summary of one row and metric from its runs' ``case id -> value`` maps (NaN: no value).

    The reduction pools every value of every run; the interval is :func:`mean_interval` of the
    ``(runs, units)`` matrix, cases averaged within their ``groups`` first (none: each case is a
    unit), cut to the metric's ``bounds`` (:meth:`MeanInterval.within`); the seed spread is over
    the per-run means, the shares by :func:`variance_shares`.
    """
    cases = sorted({c for v in per_run for c in v})
    matrix = np.array([[v.get(c, math.nan) for c in cases] for v in per_run], dtype=np.float64)
    kept = [np.array([x for x in v.values() if not math.isnan(x)]) for v in per_run]
    red = reduce_values([x for v in per_run for x in v.values()])
    units = group_units(matrix, cases, dict(groups or {}))[0] if matrix.size else matrix
    ci = mean_interval(units).within(bounds)
    means = [_run_mean(v) for v in kept if v.size]
    seed_sd = float(np.std(means, ddof=1)) if len(means) > 1 and np.isfinite(means).all() else math.nan
    seed_share, case_share = variance_shares(kept)
    extra = {name: float(fn(units)) for name, fn in ROW_STATISTICS.items()}
    return RowStats(red, ci, len(means), seed_sd, seed_share, case_share, extra)


def row_stats_many(
    per_row: Sequence[Sequence[Mapping[str, float]]],
    *,
    groups: Mapping[str, str] | None = None,
    bounds: tuple[float, float] = UNBOUNDED,
) -> list[RowStats]:
    """:func:`row_stats` of several rows, equal to it field for field (tested) and several times
    faster on a large table: rows whose runs (two or more) share one case list with a finite value
    everywhere, the usual fixed test set, are summarised together, one array operation per shape;
    the others (and every row when the dataset groups its cases) one at a time."""
    out: list[RowStats | None] = [None] * len(per_row)
    blocks: dict[tuple[int, int], list[tuple[int, np.ndarray, list[int]]]] = {}
    orders: dict[tuple[str, ...], list[int]] = {}
    for i, per_run in enumerate(per_row):
        keys = tuple(per_run[0]) if per_run and not groups else ()
        values = None
        if len(per_run) > 1 and len(keys) > 1 and all(tuple(v) == keys for v in per_run[1:]):
            values = np.array([list(v.values()) for v in per_run], dtype=np.float64)
        if values is None or not np.isfinite(values).all():
            out[i] = row_stats(per_run, groups=groups, bounds=bounds)
            continue
        if keys not in orders:
            orders[keys] = sorted(range(len(keys)), key=keys.__getitem__)
        blocks.setdefault(values.shape, []).append((i, values, orders[keys]))
    for block in blocks.values():
        pooled = np.stack([v for _, v, _ in block])  # (rows, runs, cases) in each run's case order
        matrix = np.stack([v[:, order].T for _, v, order in block])  # (rows, cases sorted, runs)
        for (i, _, _), stat in zip(block, _complete_row_stats(pooled, matrix, bounds), strict=True):
            out[i] = stat
    return out  # type: ignore[return-value]


def _complete_row_stats(
    pooled: np.ndarray, matrix: np.ndarray, bounds: tuple[float, float]
) -> list[RowStats]:
    """:func:`row_stats` of rows with ``S >= 2`` runs on the same ``U >= 2`` cases, every value
    finite: ``pooled`` ``(rows, S, U)`` in the runs' case order, ``matrix`` ``(rows, U, S)`` the
    units (cases sorted) by run, transposed (:func:`~bench.leaderboard.intervals.crossed_components_many`)."""
    r, s, u = pooled.shape
    flat = pooled.reshape(r, s * u)
    mean, std, median = flat.mean(axis=1), flat.std(axis=1, ddof=1), np.median(flat, axis=1)
    ms_seed, ms_unit, ms_res, m = crossed_components_many(matrix)
    run_means = pooled.mean(axis=2)
    seed_sd = run_means.std(axis=1, ddof=1)
    # variance_shares: between runs over k = S runs of U cases each, within runs summed run by run
    sizes = np.full(s, float(u))
    n_tot, n0 = s * u, (s * u - (sizes**2).sum() / (s * u)) / (s - 1)
    msb = (sizes * (run_means - mean[:, None]) ** 2).sum(axis=1) / (s - 1)
    within = ((pooled - run_means[:, :, None]) ** 2).sum(axis=2)
    msw = np.zeros(r)
    for j in range(s):  # Python's sum() over the runs, in order
        msw = msw + within[:, j]
    msw = msw / (n_tot - s)
    out = []
    for i in range(r):
        red = Reduction(
            mean=float(mean[i]), std=float(std[i]), median=float(median[i]), n=s * u, n_nan=0, n_inf=0
        )
        ci = crossed_from_components(
            float(ms_seed[i]), float(ms_unit[i]), float(ms_res[i]), float(m[i]), s, u
        ).within(bounds)
        s2_b = max(0.0, float((msb[i] - msw[i]) / n0))
        total = s2_b + float(msw[i])
        shares = (s2_b / total, float(msw[i]) / total) if total > 0 else (math.nan, math.nan)
        extra = {name: float(fn(matrix[i].T)) for name, fn in ROW_STATISTICS.items()}
        out.append(RowStats(red, ci, s, float(seed_sd[i]), *shares, extra))
    return out


def _run_mean(kept: np.ndarray) -> float:
    """The mean of one run's non-NaN values as :func:`reduce_values` gives it (an infinite value
    makes it infinite, both signs NaN), without the rest of the reduction."""
    if np.isfinite(kept).all():
        return float(np.mean(kept))
    pos, neg = bool(np.isposinf(kept).any()), bool(np.isneginf(kept).any())
    return math.nan if pos and neg else (math.inf if pos else -math.inf)


def variance_shares(groups: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(seed share, case share)`` of the variance, by one-way random-effects ANOVA over runs.

    Between-run component ``s2_b = max(0, (MSB - MSW) / n0)`` with the unbalanced ``n0 =
    (N - sum n_i^2 / N) / (k - 1)``; within-run component ``MSW``; shares are each over their sum.
    NaN when there are fewer than two runs, no within-run degrees of freedom, a non-finite value
    or no variance at all.
    """
    gs = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    gs = [g for g in gs if g.size]
    k, n_tot = len(gs), sum(g.size for g in gs)
    if k < 2 or n_tot <= k or not all(np.isfinite(g).all() for g in gs):
        return math.nan, math.nan
    sizes = np.array([g.size for g in gs], dtype=np.float64)
    means = np.array([g.mean() for g in gs])
    grand = float(np.concatenate(gs).mean())
    msb = float((sizes * (means - grand) ** 2).sum() / (k - 1))
    msw = float(sum(((g - g.mean()) ** 2).sum() for g in gs) / (n_tot - k))
    n0 = (n_tot - (sizes**2).sum() / n_tot) / (k - 1)
    s2_b = max(0.0, (msb - msw) / n0)
    total = s2_b + msw
    if total <= 0:
        return math.nan, math.nan
    return s2_b / total, msw / total


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN entries stay NaN and do not count in ``m``)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    if idx.size == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    m = idx.size
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


@dataclass(frozen=True)
class Paired:
    """Paired comparison of rows ``a`` and ``b`` on the cases both have.

    ``diff`` is mean(a - b) in the metric's units; ``p`` the two-sided Wilcoxon signed-rank
    p-value; ``lo``/``hi`` the paired case-bootstrap CI of the mean difference; ``n`` the pairs
    used and ``n_nan`` the pairs left out because a difference was undefined (NaN).
    """

    diff: float
    lo: float
    hi: float
    p: float
    n: int
    n_nan: int


def paired_compare(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Paired:
    """Wilcoxon signed-rank test and paired bootstrap CI of ``mean(a - b)``.

    Args:
        a, b: ``(n_cases,)`` per-case values of two rows on the same cases (same order).
    Infinite differences keep their sign and rank as the largest magnitudes in the test; they make
    the mean difference infinite.
    """
    with np.errstate(invalid="ignore"):
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n_nan = int(np.isnan(d).sum())
    d = d[~np.isnan(d)]
    if d.size == 0:
        return Paired(math.nan, math.nan, math.nan, math.nan, 0, n_nan)
    diff = float(np.mean(d)) if np.isfinite(d).all() else float(np.sign(d[np.isinf(d)]).sum() * math.inf)
    ci = mean_ci(d[None, :], n_resamples=n_resamples, confidence=confidence, seed=seed)
    lo, hi = ci.lo, ci.hi
    return Paired(diff, lo, hi, signed_rank_p_inf(d), int(d.size), n_nan)


def signed(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Values turned into scores where higher is better (NaN stays NaN)."""
    v = np.asarray(values, dtype=np.float64)
    return v if higher_is_better else -v


def rank_scores(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ranks (1 = best, ``min`` ties) of ``scores`` along ``axis``; NaN ranks last (tied)."""
    s = np.where(np.isnan(scores), -np.inf, scores)
    return _st.rankdata(-s, method="min", axis=axis).astype(np.float64)


def rank_then_aggregate(scores: np.ndarray) -> np.ndarray:
    """Mean rank over cases: ``scores`` ``(rows, cases)`` -> ``(rows,)``.

    Each case ranks the rows; a case where no row has a value is skipped.
    """
    keep = ~np.all(np.isnan(scores), axis=0)
    if not keep.any():
        return np.full(scores.shape[0], math.nan)
    return rank_scores(scores[:, keep], axis=0).mean(axis=1)


def kendall_tau_b(reference: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between ``reference`` ``(n,)`` and each row of ``ranks`` ``(B, n)`` -> ``(B,)``.

    ``(n_c - n_d) / sqrt((n0 - n_x) (n0 - n_y))`` over the pairs of the ``n`` items (``n_x``, ``n_y``:
    pairs tied in the reference, in the row). The items are walked in reference order, so that
    each compares at once, for all ``B`` rows, with the items strictly above it: ``O(B n^2)`` sign
    comparisons of small integers (ranks), item by item down the columns of a ``(n, B)`` array, in
    ``n`` vectorised steps (about 6 ms for 130 rows and 2000 resamples; materialising every pair
    as a float took over a second). A NaN anywhere gives NaN.
    """
    reference = np.asarray(reference, dtype=np.float64)
    ranks = np.atleast_2d(np.asarray(ranks, dtype=np.float64))
    n = reference.size
    if np.isnan(reference).any() or np.isnan(ranks).any():
        return _kendall_tau_b_pairs(reference, ranks)
    order = np.argsort(reference, kind="stable")
    x = reference[order]
    y = np.ascontiguousarray(ranks[:, order].T)  # (n, B): item i's rank in every resample
    if np.all(y == np.round(y)) and np.abs(y).max(initial=0) < 2**14:
        y = y.astype(np.int16)  # ranks: exact, and a quarter of the memory traffic
    above = np.searchsorted(x, x, side="right")  # first item strictly above item i in the reference
    num = np.zeros(ranks.shape[0], dtype=np.int64)
    for i in range(n):
        rest = y[above[i] :]
        if rest.shape[0]:
            num += np.sign(rest - y[i]).sum(axis=0, dtype=np.int64)
    n_pairs = n * (n - 1) // 2
    tied = _tied_pairs(np.sort(y.T, axis=1))
    denom = np.sqrt((n_pairs - _tied_pairs(x[None, :])[0]) * (n_pairs - tied))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, num.astype(np.float64) / denom, math.nan)


def _tied_pairs(sorted_rows: np.ndarray) -> np.ndarray:
    """``(B, n)`` rows sorted ascending -> ``(B,)`` how many pairs of each row are equal."""
    b, n = sorted_rows.shape
    if n < 2:
        return np.zeros(b, dtype=np.int64)
    new = np.ones((b, n), dtype=bool)
    new[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    pos = np.arange(n)
    first = np.maximum.accumulate(np.where(new, pos, 0), axis=1)  # where each item's run starts
    return (pos - first).sum(axis=1)  # item k ties with the k - first items before it in its run


def _kendall_tau_b_pairs(reference: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """:func:`kendall_tau_b` by its definition over every pair (NaN propagates)."""
    i, j = np.triu_indices(reference.size, k=1)
    s0 = np.sign(reference[i] - reference[j])
    s = np.sign(ranks[:, i] - ranks[:, j])
    denom = np.sqrt(np.count_nonzero(s0) * np.count_nonzero(s, axis=1).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (s * s0).sum(axis=1) / denom, math.nan)


def _counts(idx: np.ndarray, size: int) -> np.ndarray:
    """``(B, k)`` draws in ``[0, size)`` -> ``(B, size)`` how often each was drawn."""
    b = idx.shape[0]
    flat = (idx + size * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * size).reshape(b, size).astype(np.float64)


def resampled_means(
    matrices: Sequence[np.ndarray], *, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """Row means under a paired bootstrap of cases (and of each row's runs): ``(B, rows)``.

    The two-level bootstrap: each resample draws the row's runs (seeds × folds) with replacement,
    then the cases with replacement, and takes the mean over every drawn (run, case) value that is
    not NaN (the pooled mean; an infinite value makes it infinite). Runs of one row share their test
    cases (crossed design: one case draw serves every drawn run); folds with disjoint test cases
    are nested in it (a fold's cases are NaN for the other folds).

    The draws come in a fixed order: the case weights, then each row's run weights in row order.
    Every row is computed at once on run-padded ``(rows, max runs, cases)`` arrays (a padded run
    has weight 0); the sums are the ones a per-row ``einsum`` gives, to the bit (tested).

    Args:
        matrices: per row a ``(runs, cases)`` array on the table's common case axis (NaN where a
            run has no value). The same case draw is used for every row (paired); each row's runs
            are drawn with replacement on their own.
    """
    rng = np.random.default_rng(seed)
    n_cases = matrices[0].shape[1]
    case_w = _counts(rng.integers(0, n_cases, size=(n_resamples, n_cases)), n_cases)
    n_max = max(x.shape[0] for x in matrices)
    run_w = np.zeros((len(matrices), n_resamples, n_max))
    x = np.full((len(matrices), n_max, n_cases), math.nan)
    for r, m in enumerate(matrices):
        n_runs = m.shape[0]
        run_w[r, :, :n_runs] = _counts(rng.integers(0, n_runs, size=(n_resamples, n_runs)), n_runs)
        x[r, :n_runs] = m
    valid = ~np.isnan(x)
    inf = np.isinf(x)
    x0 = np.where(valid & ~inf, x, 0.0)
    total = np.einsum("rbi,ric,bc->br", run_w, x0, case_w)
    # counts are integers (exact in any order); a row with every value drew runs × cases of them
    n_runs = np.array([m.shape[0] for m in matrices])
    padding = np.arange(n_max)[None, :, None] >= n_runs[:, None, None]
    count = np.broadcast_to(float(n_cases) * n_runs, total.shape).copy()
    holes = np.flatnonzero(~(valid | padding).all(axis=(1, 2)))
    count[:, holes] = _weighted(valid[holes], run_w[holes], case_w)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    has_inf = np.flatnonzero(inf.any(axis=(1, 2)))
    if has_inf.size:
        n_pos = _weighted(inf[has_inf] & (x[has_inf] > 0), run_w[has_inf], case_w)
        n_neg = _weighted(inf[has_inf] & (x[has_inf] < 0), run_w[has_inf], case_w)
        sub = mean[:, has_inf]
        sub = np.where(n_pos > 0, math.inf, sub)
        mean[:, has_inf] = np.where(n_neg > 0, np.where(n_pos > 0, math.nan, -math.inf), sub)
    return mean


def _weighted(mask: np.ndarray, run_w: np.ndarray, case_w: np.ndarray) -> np.ndarray:
    """How many drawn (run, case) values of each row fall in ``mask`` ``(rows, runs, cases)``:
    ``(B, rows)`` from the run weights ``(rows, B, runs)`` and case weights ``(B, cases)``."""
    per_run = np.matmul(mask.astype(np.float64), case_w.T)  # (rows, runs, B)
    return (run_w * per_run.transpose(0, 2, 1)).sum(axis=-1).T


@dataclass(frozen=True)
class RankStability:
    """Ranks under resampling (challengeR's blob-plot data) for ``rows`` rows.

    Attributes:
        full: ``(rows,)`` ranks on all data.
        p_first: ``(rows,)`` share of resamples in which the row ranks first.
        mean_rank: ``(rows,)``.
        lo, hi: ``(rows,)`` 2.5 and 97.5 percentiles of the resampled ranks.
        freq: ``(rows, rows)`` share of resamples with row ``i`` at rank ``j + 1``.
        tau: ``(B,)`` Kendall's tau-b between the full and each resampled ranking.
    """

    full: np.ndarray
    p_first: np.ndarray
    mean_rank: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    freq: np.ndarray
    tau: np.ndarray
    n_resamples: int
    seed: int


def rank_stability(full: np.ndarray, resampled: np.ndarray, *, seed: int = 0) -> RankStability:
    """Summarise ``resampled`` ranks ``(B, rows)`` against the ``full`` ranking ``(rows,)``."""
    n_rows = full.size
    freq = _rank_shares(resampled, n_rows)
    lo, hi = np.quantile(resampled, [0.025, 0.975], axis=0, method="nearest")
    return RankStability(
        full=full,
        p_first=(resampled == 1).mean(axis=0),
        mean_rank=resampled.mean(axis=0),
        lo=lo,
        hi=hi,
        freq=freq,
        tau=kendall_tau_b(full, resampled),
        n_resamples=resampled.shape[0],
        seed=seed,
    )


def _rank_shares(resampled: np.ndarray, n_rows: int) -> np.ndarray:
    """``(rows, rows)``: the share of resamples in which row ``i`` took rank ``j + 1`` (ranks that are
    not integers in ``1..rows`` count nowhere); one count over all resamples."""
    b = resampled.shape[0]
    hit = (resampled >= 1) & (resampled <= n_rows) & (resampled == np.floor(resampled))
    rows = np.broadcast_to(np.arange(n_rows), resampled.shape)[hit]
    idx = rows * n_rows + resampled[hit].astype(np.int64) - 1
    counts = np.bincount(idx, minlength=n_rows * n_rows).reshape(n_rows, n_rows)
    return counts.astype(np.float64) / b


def tau_summary(tau: np.ndarray) -> tuple[float, float, float]:
    """Median and 2.5/97.5 percentiles of Kendall's tau over resamples (NaN ones left out)."""
    t = np.asarray(tau, dtype=np.float64)
    t = t[~np.isnan(t)]
    if t.size == 0:
        return math.nan, math.nan, math.nan
    med, lo, hi = np.quantile(t, [0.5, 0.025, 0.975])
    return float(med), float(lo), float(hi)


def combined_ranks(scores: np.ndarray) -> np.ndarray:
    """Combined rank from per-metric scores ``(..., rows, metrics)`` -> ``(..., rows)``.

    Each metric ranks the rows (aggregate-then-rank); the rows are then ranked by their mean rank.
    """
    per_metric = rank_scores(scores, axis=-2)
    return rank_scores(-per_metric.mean(axis=-1), axis=-1)
