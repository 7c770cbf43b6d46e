"""The statistics behind :mod:`bench.leaderboard.claims`: per-run means from the records' cases,
paired loss differences across models, units (cases or the case groups a dataset declares), and the
verdict rule (agree / disagree / cannot tell / n too small).

Paired loss comparisons: for every leaderboard row trained with both losses (same row identity
apart from the loss, same seeds and folds), the per-run test mean of each metric
(:func:`bench.metrics.reduction.reduce_values` over the record's cases) is differenced
(``other - base``) and averaged over the runs. Across models this gives how many models the other
loss improves, the median difference and a two-sided Wilcoxon signed-rank p over the models
(:func:`bench.leaderboard.wilcoxon.signed_rank_p` with ``scipy_auto``).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from bench.leaderboard.degenerate import ConstantReferences, row_degeneracy
from bench.leaderboard.rows import case_groups
from bench.leaderboard.stats import row_stats
from bench.leaderboard.wilcoxon import signed_rank_p, smallest_p
from bench.metrics.reduction import reduce_values
from bench.metrics.registry import higher_is_better, metric_bounds
from bench.records.identity import row_key
from bench.records.record import Record

ALPHA = 0.05
MARGIN = 0.01  # non-inferiority margin of a "similar" claim, in the metric's units (1 Dice point)

# ---- records -------------------------------------------------------------------------------


def run_mean(r: Record, metric: str) -> float:
    """The run's test mean of ``metric``: the reduction of its cases (its aggregate without cases)."""
    if r.cases:
        return float(reduce_values(list(r.case_values(metric).values()))["mean"])
    return float((r.aggregates.get(metric) or {}).get("mean", math.nan))


Table = str | tuple[str, ...]
"""A sweep's name, or the names of the sweeps whose runs share one leaderboard table (a converged
table: ``("chase_db1_long", "chase_db1_long_claims")``)."""


def table_name(table: Table) -> str:
    """``table`` as the leaderboard titles it: the sweeps joined by `` + ``."""
    return table if isinstance(table, str) else " + ".join(table)


def train_runs(records: Iterable[Record], sweep: Table, loss: str | None = None) -> list[Record]:
    """The finished training runs of ``sweep`` (a :data:`Table`; trained with ``loss`` when given),
    by run id."""
    sweeps = {sweep} if isinstance(sweep, str) else set(sweep)
    return sorted(
        (
            r
            for r in records
            if r.kind == "train"
            and r.done
            and r.config.get("sweep") in sweeps
            and (loss is None or r.loss_name == loss)
        ),
        key=lambda r: r.run_id,
    )


def runs_by_model(records: Iterable[Record]) -> dict[str, list[Record]]:
    """Runs by model name (one row per model in the tables the claims read)."""
    out: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        out[r.model_name].append(r)
    return dict(out)


def unit_groups(runs: Sequence[Record]) -> dict[str, str]:
    """``case -> group`` the runs' dataset declares (:func:`bench.leaderboard.rows.case_groups`)."""
    if not runs:
        return {}
    cases = sorted({str(c.get("case_id")) for r in runs for c in r.cases})
    return case_groups(str(runs[0].dataset.get("name")), cases)


def unit_means(runs: Sequence[Record], metric: str) -> dict[str, float]:
    """``unit -> mean over the runs that tested it`` where a unit is a case, or the group of cases
    the dataset declares (its cases averaged first), as the leaderboard pairs them."""
    groups = unit_groups(runs)
    vals: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        for c, v in r.case_values(metric).items():
            vals[c].append(float(v))
    cases = {c: float(np.mean(v)) for c, v in vals.items()}
    units: dict[str, list[float]] = defaultdict(list)
    for c, v in cases.items():
        units[groups.get(c, c)].append(v)
    return {u: float(np.nanmean(v)) for u, v in units.items()}


def units_text(runs: Sequence[Record], n: int) -> str:
    """What ``n`` paired units are: cases, or the case groups the runs' dataset declares."""
    return f"{n} case groups" if unit_groups(runs) else f"{n} cases"


def interval_text(runs: Sequence[Record], metric: str) -> str:
    """``mean [lo, hi]`` of the runs as a table's cell gives it (:func:`bench.leaderboard.stats.row_stats`:
    the ``(runs, units)`` interval cut to the metric's bounds)."""
    per_run = [r.case_values(metric) for r in runs]
    iv = row_stats(per_run, groups=unit_groups(runs), bounds=metric_bounds(metric)).ci
    return f"{iv.mean:.3f} [{iv.lo:.3f}, {iv.hi:.3f}]"


# ---- statistics ----------------------------------------------------------------------------


def _model_key(config: dict[str, Any]) -> str:
    """The leaderboard's row identity (:func:`bench.records.identity.row_key`) without the loss: which rows
    may be paired."""
    return row_key({k: v for k, v in config.items() if k != "loss"})


def paired_losses(
    records: Iterable[Record], dataset: str, base: str, other: str, metrics: tuple[str, ...]
) -> dict[str, Any]:
    """Per-model seed-averaged differences ``other - base`` of each metric, and their summary."""
    means: dict[tuple[str, str, tuple[int, int]], dict[str, float]] = {}  # (row, loss, (seed, fold))
    names: dict[str, str] = {}
    for r in records:
        if r.kind != "train" or not r.done:
            continue
        if r.dataset.get("name") != dataset or r.loss_name not in (base, other):
            continue
        key = _model_key(r.config)
        names[key] = r.model_name
        means[(key, r.loss_name, (r.seed, r.fold or 0))] = {m: run_mean(r, m) for m in metrics}
    runs_of = {
        key: sorted(s for k, loss, s in means if k == key and loss == base and (k, other, s) in means)
        for key in names
    }
    paired = [key for key in names if runs_of[key]]
    counts = Counter(names[key] for key in paired)
    labels: dict[str, str] = {}
    for i, key in enumerate(paired):  # rows sharing a model name: its settings, then a number
        label = (
            names[key] if counts[names[key]] == 1 else f"{names[key]} {json.loads(key)['model']['kwargs']}"
        )
        labels[key] = label if label not in labels.values() else f"{label} #{i}"
    diffs: dict[str, dict[str, float]] = defaultdict(dict)
    for key in paired:
        for m in metrics:
            d = [means[(key, other, s)][m] - means[(key, base, s)][m] for s in runs_of[key]]
            diffs[labels[key]][m] = float(np.mean(d)) if np.all(np.isfinite(d)) else float("nan")
    summary = {}
    for m in metrics:
        d = np.array([diffs[n][m] for n in diffs if np.isfinite(diffs[n][m])])
        better = (d > 0) if higher_is_better(m) else (d < 0)
        p = signed_rank_p(d, scipy_auto=True) if len(d) >= 2 and np.any(d != 0) else float("nan")
        summary[m] = {
            "models": int(len(d)),
            "improved": int(better.sum()),
            "median_diff": float(np.median(d)) if len(d) else float("nan"),
            "wilcoxon_p": p,
        }
    return {"dataset": dataset, "base": base, "other": other, "per_model": dict(diffs), "summary": summary}


def one_sided_p(d: np.ndarray) -> float:
    """One-sided signed-rank p of ``d > 0`` (half the two-sided p on the side the ranks lean to)."""
    d = d[d != 0]
    if d.size == 0:
        return 1.0
    p2 = signed_rank_p(d, scipy_auto=True)
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    lean = float(ranks[d > 0].sum() - ranks[d < 0].sum())
    return p2 / 2 if lean > 0 else 1.0 - p2 / 2


def verdict(p_adj: float, towards: bool, n: int, m: int) -> str:
    """agree / disagree / cannot tell (or n too small) by :data:`RULES`."""
    if smallest_p(n, m) >= ALPHA:
        return f"n too small (n = {n})"
    if p_adj < ALPHA:
        return "agree" if towards else "disagree"
    return "cannot tell"


def degenerate_text(runs: Sequence[Record], references: ConstantReferences) -> str:
    """``k of n`` runs degenerate by :func:`bench.leaderboard.degenerate.row_degeneracy` (the
    leaderboard's rule), with their kinds: ``1 of 3 (all-background)``."""
    deg = row_degeneracy(runs, references)
    kinds = Counter(r.kind for r in deg.runs)
    named = ", ".join(f"{k}{f' ×{n}' if n > 1 else ''}" for k, n in sorted(kinds.items()))
    return f"{deg.n_degenerate} of {deg.n_runs}" + (f" ({named})" if named else "")
