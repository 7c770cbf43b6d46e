"""Ranking a table's rows: per-metric and combined ranks, rank stability, the comparisons with the
best and the (opt-in) all-pairs tests.

Works on the ranked rows of one table and the per-row numbers :func:`bench.leaderboard.analysis.analyse`
gathered (each row's :class:`~bench.leaderboard.stats.RowStats`, its per-case means and its
``(runs, cases)`` matrices); the statistics themselves are :mod:`bench.leaderboard.stats`. Directions
(higher or lower is better) come from the metric registry through ``up``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.leaderboard import stats
from bench.leaderboard.intervals import MeanInterval, mean_interval
from bench.leaderboard.rows import Row
from bench.leaderboard.stats import ALPHA, RowStats
from bench.leaderboard.wilcoxon import signed_rank_p_inf, smallest_p


@dataclass(frozen=True)
class PairResult:
    """Paired comparison of rows ``a`` and ``b`` (keys) on one metric; ``diff`` oriented as a - b."""

    a: str
    b: str
    paired: stats.Paired
    p_holm: float
    significant: bool
    noise_sd: float
    within_noise: bool

    def to_dict(self, label: dict[str, str]) -> dict[str, Any]:
        """Plain form (the JSON export); ``label`` names the rows."""
        p = self.paired
        return {
            "a": label[self.a],
            "b": label[self.b],
            "diff": p.diff,
            "ci_lo": p.lo,
            "ci_hi": p.hi,
            "p": p.p,
            "p_holm": self.p_holm,
            "significant": self.significant,
            "n": p.n,
            "n_nan": p.n_nan,
            "noise_sd": self.noise_sd,
            "within_noise": self.within_noise,
        }


def case_means(matrix: np.ndarray) -> np.ndarray:
    """Per-case mean over runs (NaN runs left out; an infinite value makes the case infinite)."""
    if not matrix.size:
        return np.array([])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cases stay NaN
        return np.nanmean(matrix, axis=0)


def rank_rows(
    ranked: list[Row],
    rank_metrics: list[str],
    row_stats: dict[str, dict[str, RowStats]],
    case_values: dict[str, dict[str, np.ndarray]],
    up: dict[str, bool],
    collapsed: frozenset[str] | set[str] = frozenset(),
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], dict[str, float]]:
    """Per metric the rank of each row's mean and its mean rank over cases; the combined rank.

    Rows in ``collapsed`` (the analysis passes every row with a degenerate run) rank last on
    topology metrics (:func:`is_topology`): their values there are, wholly or partly, those of a
    constant mask, not of a segmentation."""
    keys = [r.key for r in ranked]
    agg_rank: dict[str, dict[str, float]] = {}
    case_rank: dict[str, dict[str, float]] = {}
    score_cols = []
    for m in rank_metrics:
        out = [is_topology(m) and k in collapsed for k in keys]
        means = [math.nan if o else row_stats[k][m].reduction["mean"] for k, o in zip(keys, out)]
        score = stats.signed(np.array(means), up[m])
        score_cols.append(score)
        agg_rank[m] = dict(zip(keys, stats.rank_scores(score)))
        per_case = np.array(
            [stats.signed(case_values[k][m] * (math.nan if o else 1.0), up[m]) for k, o in zip(keys, out)]
        )
        case_rank[m] = dict(zip(keys, stats.rank_then_aggregate(per_case)))
    combined: dict[str, float] = {}
    if ranked and rank_metrics:
        combined = dict(zip(keys, stats.combined_ranks(np.stack(score_cols, axis=-1))))
    return agg_rank, case_rank, combined


def pairwise(
    ranked: list[Row],
    rank_metrics: list[str],
    row_stats: dict[str, dict[str, RowStats]],
    case_values: dict[str, dict[str, np.ndarray]],
    up: dict[str, bool],
    *,
    n_resamples: int,
    seed: int,
) -> tuple[dict[str, list[PairResult]], dict[str, str], dict[str, set[str]]]:
    """Per metric: every pair of ranked rows tested (Holm over the table's pairs), the best row and
    the rows not significantly different from it."""
    pairs: dict[str, list[PairResult]] = {}
    best: dict[str, str] = {}
    tied: dict[str, set[str]] = {}
    for m in rank_metrics:
        means = {r.key: row_stats[r.key][m].reduction["mean"] for r in ranked}
        defined = [r.key for r in ranked if not math.isnan(means[r.key])]
        if not defined:
            continue
        best[m] = max(defined, key=lambda k: stats.signed(np.array(means[k]), up[m]))
        raw = []
        for i, a in enumerate(ranked):
            for b in ranked[i + 1 :]:
                p = stats.paired_compare(
                    case_values[a.key][m], case_values[b.key][m], n_resamples=n_resamples, seed=seed
                )
                raw.append((a.key, b.key, p))
        adj = stats.holm([p.p for _, _, p in raw])
        results = []
        for (a, b, p), ph in zip(raw, adj):
            sds = [row_stats[k][m].seed_sd for k in (a, b) if not math.isnan(row_stats[k][m].seed_sd)]
            noise = math.sqrt(sum(s * s for s in sds) / len(sds)) if sds else math.nan
            results.append(PairResult(a, b, p, float(ph), bool(ph < ALPHA), noise, bool(abs(p.diff) < noise)))
        pairs[m] = results
        tied[m] = {
            k
            for pr in results
            if best[m] in (pr.a, pr.b) and not pr.significant
            for k in (pr.a, pr.b)
            if means[k] != means[best[m]]
        }
    return pairs, best, tied


def rank_stability(
    ranked: list[Row],
    rank_metrics: list[str],
    mats: dict[str, dict[str, np.ndarray]],
    up: dict[str, bool],
    agg_rank: dict[str, dict[str, float]],
    *,
    n_resamples: int,
    seed: int,
) -> dict[str, stats.RankStability]:
    """Stability of each metric's rank (of the mean) under the paired two-level bootstrap of the
    rows' ``(runs, cases)`` matrices ``mats`` (row -> metric): the same case and run draws for every
    metric (same seed). The table's ranking is that of its primary metric, so its stability is
    ``result[primary]``."""
    per_metric = {}
    for m in rank_metrics:
        boot = stats.signed(
            stats.resampled_means([mats[r.key][m] for r in ranked], n_resamples=n_resamples, seed=seed), up[m]
        )
        full = np.array([agg_rank[m][r.key] for r in ranked])
        per_metric[m] = stats.rank_stability(full, stats.rank_scores(boot), seed=seed)
    return per_metric


# ---- comparisons with the best -----------------------------------------------------------

TOPOLOGY_PREFIXES = ("betti", "cldice")
"""Metrics that reward empty and full masks: shown for a collapsed row only beside an overlap metric."""
EQUIVALENCE_CONFIDENCE = 0.90
"""TOST at α 0.05: the 90 % interval of the difference within ± the margin."""


def is_topology(metric: str) -> bool:
    """True for a topology metric (Betti errors, clDice and their per-class keys)."""
    return metric.startswith(TOPOLOGY_PREFIXES)


@dataclass(frozen=True)
class BestComparison:
    """Row ``row`` against the column's best row ``best`` on one metric (one of the m − 1
    comparisons of the Holm family).

    ``diff``: the paired difference row − best, :func:`~bench.leaderboard.intervals.mean_interval`
    of the ``(paired runs, units)`` difference matrix (runs paired by seed and fold); ``p``: the
    two-sided Wilcoxon signed-rank p on the ``n`` seed-averaged unit differences that are not zero;
    ``p_holm``: Holm over the family; ``min_p``: the smallest Holm-adjusted p the exact test can
    reach with ``n`` pairs (``k · 2 / 2**n`` for ``k`` comparisons); ``testable``: ``min_p <= α``;
    ``equivalent``: TOST within the margin (None without a margin).
    """

    row: str
    best: str
    diff: MeanInterval
    p: float
    p_holm: float
    n: int
    min_p: float
    testable: bool
    significant: bool
    equivalent: bool | None

    def to_dict(self) -> dict[str, Any]:
        """Plain form (the JSON export)."""
        d = self.diff
        return {
            "diff": d.mean,
            "ci_lo": d.lo,
            "ci_hi": d.hi,
            "ci_design": d.design,
            "p": self.p,
            "p_holm": self.p_holm,
            "n": self.n,
            "min_p": self.min_p,
            "testable": self.testable,
            "significant": self.significant,
            "equivalent": self.equivalent,
            "mark": self.mark,
        }

    @property
    def mark(self) -> str:
        """``≡`` equivalent within the margin, ``·`` n too small to test, ``*`` differs from the best
        (Holm-adjusted p < α), ``ns`` testable and not significant."""
        if self.equivalent:
            return "≡"
        if not self.testable:
            return "·"
        return "*" if self.significant else "ns"


def run_keys(row: Row) -> list[tuple[object, object]]:
    """``(seed, fold)`` of each done run, in the order of the row's ``(runs, cases)`` matrices."""
    return [(r.seed, r.fold) for r in row.done]


def paired_difference(
    a: np.ndarray, b: np.ndarray, keys_a: list, keys_b: list, confidence: float = stats.CONFIDENCE
) -> MeanInterval:
    """Interval of mean(a − b) from two ``(runs, units)`` matrices, runs paired by their keys; with
    no shared key (or repeated keys) the seed-averaged unit differences (one run: no seed term)."""
    common = [k for k in keys_a if k in keys_b]
    if common and len(set(keys_a)) == len(keys_a) and len(set(keys_b)) == len(keys_b):
        ia, ib = [keys_a.index(k) for k in common], [keys_b.index(k) for k in common]
        with np.errstate(invalid="ignore"):
            return mean_interval(a[ia] - b[ib], confidence)
    with np.errstate(invalid="ignore"):
        return mean_interval((case_means(a) - case_means(b))[None, :], confidence)


def compare_with_best(
    ranked: list[Row],
    best: str,
    units: dict[str, np.ndarray],
    *,
    margin: float | None = None,
) -> dict[str, BestComparison]:
    """The m − 1 comparisons of ``ranked`` rows with ``best`` on one metric, Holm over them.

    Args:
        units: row key -> ``(runs, units)`` matrix (cases averaged within their groups).
        margin: equivalence margin in the metric's units (TOST); None: no equivalence claim.
    """
    others = [r for r in ranked if r.key != best]
    keys = {r.key: run_keys(r) for r in ranked}
    raw = []
    for r in others:
        with np.errstate(invalid="ignore"):
            d = case_means(units[r.key]) - case_means(units[best])
        d = d[~np.isnan(d) & (d != 0)]
        raw.append((r.key, d, signed_rank_p_inf(d) if d.size else math.nan))
    adj = stats.holm([p for _, _, p in raw])
    k = int(np.sum(~np.isnan([p for _, _, p in raw])))
    out = {}
    for (key, d, p), ph in zip(raw, adj):
        diff = paired_difference(units[key], units[best], keys[key], keys[best])
        min_p = smallest_p(d.size, k)
        equivalent = None
        if margin is not None:
            tost = paired_difference(units[key], units[best], keys[key], keys[best], EQUIVALENCE_CONFIDENCE)
            equivalent = bool(-margin <= tost.lo and tost.hi <= margin)
        testable = bool(min_p <= ALPHA)
        out[key] = BestComparison(
            key,
            best,
            diff,
            float(p),
            float(ph),
            int(d.size),
            min_p,
            testable,
            bool(testable and ph < ALPHA),
            equivalent,
        )
    return out
