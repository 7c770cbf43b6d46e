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

from bench.leaderboard.intervals import MeanInterval, group_units, mean_interval
from bench.leaderboard.wilcoxon import signed_rank_p_inf
from bench.metrics.reduction import Reduction, reduce_values

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


def row_stats(per_run: Sequence[Mapping[str, float]], *, groups: Mapping[str, str] | None = None) -> RowStats:
    """Summary of one row and metric from its runs' ``case id -> value`` maps (NaN: no value).

    The reduction pools every value of every run; the interval is :func:`mean_interval` of the
    ``(runs, units)`` matrix, cases averaged within their ``groups`` first (none: each case is a
    unit); the seed spread is over the per-run means, the shares by :func:`variance_shares`.
    """
    cases = sorted({c for v in per_run for c in v})
    matrix = np.array([[v.get(c, math.nan) for c in cases] for v in per_run], dtype=np.float64)
    kept = [np.array([x for x in v.values() if not math.isnan(x)]) for v in per_run]
    red = reduce_values([x for v in per_run for x in v.values()])
    units = group_units(matrix, cases, dict(groups or {}))[0] if matrix.size else matrix
    ci = mean_interval(units)
    means = [reduce_values(v)["mean"] for v in kept if v.size]
    seed_sd = float(np.std(means, ddof=1)) if len(means) > 1 and np.isfinite(means).all() else math.nan
    seed_share, case_share = variance_shares(kept)
    extra = {name: float(fn(units)) for name, fn in ROW_STATISTICS.items()}
    return RowStats(red, ci, len(means), seed_sd, seed_share, case_share, extra)


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
    """Kendall's tau-b between ``reference`` ``(n,)`` and each row of ``ranks`` ``(B, n)`` -> ``(B,)``."""
    ranks = np.atleast_2d(ranks)
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

    Args:
        matrices: per row a ``(runs, cases)`` array on the table's common case axis (NaN where a
            run has no value). The same case draw is used for every row (paired); each row's runs
            are drawn with replacement on their own.
    """
    rng = np.random.default_rng(seed)
    n_cases = matrices[0].shape[1]
    case_w = _counts(rng.integers(0, n_cases, size=(n_resamples, n_cases)), n_cases)
    out = np.empty((n_resamples, len(matrices)))
    for r, x in enumerate(matrices):
        n_runs = x.shape[0]
        run_w = _counts(rng.integers(0, n_runs, size=(n_resamples, n_runs)), n_runs)
        valid = ~np.isnan(x)
        inf = np.isinf(x)
        x0 = np.where(valid & ~inf, x, 0.0)
        total = np.einsum("bi,ic,bc->b", run_w, x0, case_w)
        count = np.einsum("bi,ic,bc->b", run_w, valid.astype(np.float64), case_w)
        n_pos = np.einsum("bi,ic,bc->b", run_w, (inf & (x > 0)).astype(np.float64), case_w)
        n_neg = np.einsum("bi,ic,bc->b", run_w, (inf & (x < 0)).astype(np.float64), case_w)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
        mean = np.where(n_pos > 0, math.inf, mean)
        mean = np.where(n_neg > 0, np.where(n_pos > 0, math.nan, -math.inf), mean)
        out[:, r] = mean
    return out


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
    freq = np.stack([(resampled == k + 1).mean(axis=0) for k in range(n_rows)], axis=1)
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
