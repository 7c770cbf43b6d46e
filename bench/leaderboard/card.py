"""A run's leaderboard row as a model card states it (``segbench export``): the row's means over every
done run (seeds, folds) with the interval the leaderboard prints, its rank and the table's title.

The analysis is the leaderboard's own (:func:`bench.leaderboard.board.analyse_records`) on the
records of the run's dataset (a table never spans two datasets), so the card and the leaderboard
state the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.leaderboard.board import analyse_records
from bench.leaderboard.format import row_title
from bench.records import Record


@dataclass(frozen=True)
class RowResult:
    """One leaderboard row: its table, title, runs and per-metric ``(mean, lo, hi)``.

    Attributes:
        table: the table's title (as the leaderboard prints it).
        row: the row's title (``model / loss`` and the settings that tell it apart).
        run_ids: the done runs the row pools (the exported run among them).
        seeds: their seeds.
        rank: the row's rank on the primary metric (None when it is not ranked).
        primary: the metric the table is ranked by.
        metrics: ``metric -> {"mean", "lo", "hi", "design", "n_runs", "n_units"}`` for every metric the
            leaderboard analyses: the mean it prints (every value of every run) and its interval
            (:class:`~bench.leaderboard.intervals.MeanInterval`).
    """

    table: str
    row: str
    run_ids: tuple[str, ...]
    seeds: tuple[int, ...]
    rank: float | None
    primary: str | None
    metrics: dict[str, dict[str, Any]]


def row_of_run(records: Sequence[Record], run_id: str) -> RowResult | None:
    """The leaderboard row that run ``run_id`` (a done run among ``records``) belongs to; None when the
    run is not a done record of ``records``."""
    mine = next((r for r in records if r.run_id == run_id and r.done), None)
    if mine is None:
        return None
    dataset = mine.dataset.get("name")
    same = [r for r in records if r.dataset.get("name") == dataset]
    for a in analyse_records(same):
        for row in a.ranked:
            if any(r.run_id == run_id for r in row.done):
                stats = a.row_stats[row.key]
                metrics = {
                    m: {
                        "mean": float(st.reduction["mean"]),
                        "lo": float(st.ci.lo),
                        "hi": float(st.ci.hi),
                        "design": st.ci.design,
                        "n_runs": int(st.ci.n_runs),
                        "n_units": int(st.ci.n_units),
                    }
                    for m, st in stats.items()
                    if not math.isnan(float(st.reduction["mean"])) or m in a.rank_metrics
                }
                return RowResult(
                    table=a.table.label,
                    row=row_title(row),
                    run_ids=tuple(r.run_id for r in row.done),
                    seeds=tuple(int(r.seed) for r in row.done),
                    rank=a.agg_rank.get(a.primary or "", {}).get(row.key),
                    primary=a.primary,
                    metrics=metrics,
                )
    return None
