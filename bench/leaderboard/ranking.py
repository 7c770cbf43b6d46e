"""Ranking a table's rows: per-metric and combined ranks, rank stability, and the pairwise tests.

Works on the ranked rows of one table and the per-row numbers :func:`bench.leaderboard.analysis.analyse`
gathered (each row's :class:`~bench.leaderboard.stats.RowStats`, its per-case means and its
``(runs, cases)`` matrices); the statistics themselves are :mod:`bench.leaderboard.stats`. Directions
(higher or lower is better) come from the metric registry through ``up``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from bench.leaderboard import stats
from bench.leaderboard.rows import Row
from bench.leaderboard.stats import ALPHA, RowStats


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
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], dict[str, float]]:
    """Per metric the rank of each row's mean and its mean rank over cases; the combined rank."""
    keys = [r.key for r in ranked]
    agg_rank: dict[str, dict[str, float]] = {}
    case_rank: dict[str, dict[str, float]] = {}
    score_cols = []
    for m in rank_metrics:
        score = stats.signed(np.array([row_stats[k][m].reduction["mean"] for k in keys]), up[m])
        score_cols.append(score)
        agg_rank[m] = dict(zip(keys, stats.rank_scores(score)))
        per_case = np.array([stats.signed(case_values[k][m], up[m]) for k in keys])
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
    combined: dict[str, float],
    agg_rank: dict[str, dict[str, float]],
    *,
    n_resamples: int,
    seed: int,
) -> tuple[stats.RankStability, dict[str, stats.RankStability]]:
    """Stability of the combined rank and of each metric's rank under the paired two-level bootstrap
    of the rows' ``(runs, cases)`` matrices ``mats`` (row -> metric)."""
    boot = np.stack(
        [
            stats.signed(
                stats.resampled_means([mats[r.key][m] for r in ranked], n_resamples=n_resamples, seed=seed),
                up[m],
            )
            for m in rank_metrics
        ],
        axis=-1,
    )  # (B, rows, metrics); the same case and run draws for every metric (same seed)
    full_comb = np.array([combined[r.key] for r in ranked])
    stability = stats.rank_stability(full_comb, stats.combined_ranks(boot), seed=seed)
    per_metric = {}
    for j, m in enumerate(rank_metrics):
        full = np.array([agg_rank[m][r.key] for r in ranked])
        per_metric[m] = stats.rank_stability(full, stats.rank_scores(boot[..., j]), seed=seed)
    return stability, per_metric
