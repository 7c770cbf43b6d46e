"""The analysis of one table: every number and fact the outputs show, computed once.

:func:`analyse` turns a :class:`~bench.leaderboard.rows.Table` into an :class:`Analysis`: the rows in
combined-rank order, each row's statistics per metric, both rankings, the rank stability, the
Holm-corrected pairwise tests with the best and tied rows, the per-row notes, and what each row's
records state (budget, seeds, provenance, saved predictions). Every renderer (Markdown, exports,
HTML, figures) reads the :class:`Analysis` and nothing else; :meth:`Analysis.to_dict` is its plain
form and the JSON export. What each number means: ``docs/leaderboard.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.leaderboard import stats
from bench.leaderboard.format import budget, provenance, row_title, runs_text
from bench.leaderboard.ranking import PairResult, case_means, pairwise, rank_rows, rank_stability
from bench.leaderboard.rows import Row, Table, row_notes, slug
from bench.leaderboard.stats import RowStats
from bench.metrics.registry import METRICS, is_metric, metric_info
from bench.records.record import Record

RANK_METRICS: tuple[str, ...] = ("dice", "cldice", "betti0_err", "betti1_err", "ece")
"""Default metric set of the combined rank (and the default Markdown columns)."""
EXAMPLE_CASES = 3
"""Qualitative panels: cases shown per table."""

__all__ = [  # with the types an Analysis is made of, so that a renderer needs this module only
    "EXAMPLE_CASES",
    "RANK_METRICS",
    "Analysis",
    "PairResult",
    "Prediction",
    "Row",
    "RowInfo",
    "RowStats",
    "Table",
    "analyse",
    "example_file",
    "plain",
]


@dataclass(frozen=True)
class Prediction:
    """A saved test-case prediction of one of a row's done runs."""

    case: str
    path: str  # relative to the results folder
    values: dict[str, Any]  # the run's entry for that case (metric values)


@dataclass(frozen=True, kw_only=True)
class RowInfo:
    """What a row's records state besides the metric values, as the outputs show it."""

    params: int | None
    train_seconds: float | None  # mean over the done runs
    budget: str
    seeds: str
    folds: str
    records: list[str]  # run ids, every status
    provenance: str
    saved_probabilities: bool  # a done run saved predictions with probabilities
    predictions: list[Prediction]  # of the done runs, in run-id order


@dataclass(kw_only=True)
class Analysis:
    """Everything the outputs show for one table."""

    table: Table
    ranked: list[Row]  # rows with a done run, best combined rank first
    unranked: list[Row]  # rows without a done run (failed)
    human: list[Row]
    cases: list[str]
    metrics: list[str]  # every metric present, display order
    rank_metrics: list[str]  # the combined rank's metric set (present ones)
    row_stats: dict[str, dict[str, RowStats]]
    case_values: dict[str, dict[str, np.ndarray]]  # row -> metric -> (cases,) mean over runs
    pooled: dict[str, dict[str, np.ndarray]]  # row -> metric -> every value of its runs, record order
    combined: dict[str, float]
    agg_rank: dict[str, dict[str, float]]  # metric -> row -> rank of the mean
    case_rank: dict[str, dict[str, float]]  # metric -> row -> mean rank over cases
    stability: stats.RankStability | None
    metric_stability: dict[str, stats.RankStability]
    pairs: dict[str, list[PairResult]]
    best: dict[str, str]
    tied_best: dict[str, set[str]]
    notes: dict[str, list[str]]
    info: dict[str, RowInfo]
    seed: int
    n_resamples: int
    plot_notes: dict[str, str] = field(default_factory=dict)  # plots skipped for a row, and why

    @property
    def rows(self) -> list[Row]:
        """Every row in display order: ranked, failed, human."""
        return self.ranked + self.unranked + self.human

    def role(self, row: Row) -> str:
        """``ranked``, ``human`` or ``failed``."""
        return "ranked" if row in self.ranked else ("human" if row.human else "failed")

    def ranked_row(self, key: str) -> Row:
        """The ranked row with key ``key``."""
        return next(r for r in self.ranked if r.key == key)

    def is_best(self, metric: str, key: str) -> bool:
        """True when row ``key`` has the best mean of ``metric`` (ties: every row with that mean)."""
        best = self.best.get(metric)
        if best is None or key not in self.row_stats or all(r.key != key for r in self.ranked):
            return False
        if key == best:
            return True
        return bool(
            self.row_stats[key][metric].reduction["mean"] == self.row_stats[best][metric].reduction["mean"]
        )

    def example_cases(self) -> list[str]:
        """Cases with a saved prediction, most rows first, then by id (at most :data:`EXAMPLE_CASES`)."""
        count: dict[str, int] = {}
        for row in self.ranked + [r for r in self.human if r.done]:
            for cid in {p.case for p in self.info[row.key].predictions}:
                count[cid] = count.get(cid, 0) + 1
        return sorted(count, key=lambda c: (-count[c], c))[:EXAMPLE_CASES]

    def plot_names(self) -> list[tuple[str, str]]:
        """``(title, file name)`` of the table's figures (what :mod:`bench.leaderboard.plots` draws)."""
        names = []
        if self.rank_metrics and self.ranked:
            names.append(("cases", "cases.png"))
        if self.stability is not None:
            names.append(("ranking blob", "blob.png"))
        if self.pairs and len(self.ranked) > 1:
            names.append(("significance", "significance.png"))
        if any(self.info[r.key].saved_probabilities for r in self.ranked):
            names.append(("reliability", "reliability.png"))
        return names + [(f"example {c}", example_file(c)) for c in self.example_cases()]

    def to_dict(self) -> dict[str, Any]:
        """The analysis as plain data (the JSON export)."""
        idx = {r.key: i for i, r in enumerate(self.ranked)}
        label = {r.key: row_title(r) for r in self.ranked}
        out = {
            "table": self.table.label,
            "dataset": self.table.dataset,
            "settings": self.table.settings,
            "rank_metrics": self.rank_metrics,
            "cases": self.cases,
            "bootstrap": {"n_resamples": self.n_resamples, "seed": self.seed, "confidence": 0.95},
            "rows": [self._row_dict(row, idx.get(row.key)) for row in self.rows],
            "pairs": {m: [_pair_dict(p, label) for p in lst] for m, lst in self.pairs.items()},
            "plot_notes": self.plot_notes,
        }
        if self.stability is not None:
            med, lo, hi = stats.tau_summary(self.stability.tau)
            out["kendall_tau"] = {"median": med, "lo": lo, "hi": hi}
        return out

    def _row_dict(self, row: Row, i: int | None) -> dict[str, Any]:
        metrics = {}
        for m, s in self.row_stats.get(row.key, {}).items():
            entry = {k: plain(v) for k, v in s.reduction.items()}
            entry.update(ci_lo=s.ci.lo, ci_hi=s.ci.hi, ci_levels=s.ci.levels, n_runs=s.n_runs)
            entry.update(seed_sd=s.seed_sd, seed_share=s.seed_share, case_share=s.case_share)
            if m in self.agg_rank and row.key in self.agg_rank[m]:
                entry.update(
                    rank_of_mean=plain(self.agg_rank[m][row.key]),
                    mean_rank_over_cases=plain(self.case_rank[m][row.key]),
                )
                entry.update(
                    best=self.is_best(m, row.key), tied_with_best=row.key in self.tied_best.get(m, set())
                )
            metrics[m] = entry
        info = self.info[row.key]
        item: dict[str, Any] = {
            "label": row.label,
            "loss": row.loss,
            "kind": row.kind,
            "role": self.role(row),
            "combined_rank": plain(self.combined.get(row.key)),
            "budget": info.budget,
            "seeds": info.seeds,
            "folds": info.folds,
            "params": info.params,
            "records": info.records,
            "notes": self.notes.get(row.key, []),
            "provenance": info.provenance,
            "row_key": row.key,
            "metrics": metrics,
        }
        if self.stability is not None and i is not None:
            st = self.stability
            item["stability"] = {
                "p_first": plain(st.p_first[i]),
                "mean_rank": plain(st.mean_rank[i]),
                "rank_lo": plain(st.lo[i]),
                "rank_hi": plain(st.hi[i]),
            }
        return item


def example_file(case: str) -> str:
    """File name of the qualitative figure of test case ``case``."""
    return f"example_{slug(case, 'case')}.png"


def plain(v: Any) -> Any:
    """Floats as JSON-able values (NaN and inf stay floats; numpy scalars become Python)."""
    return float(v) if hasattr(v, "__float__") and not isinstance(v, (int, bool)) else v


def _pair_dict(p: PairResult, label: dict[str, str]) -> dict[str, Any]:
    return {
        "a": label[p.a],
        "b": label[p.b],
        "diff": p.paired.diff,
        "ci_lo": p.paired.lo,
        "ci_hi": p.paired.hi,
        "p": p.paired.p,
        "p_holm": p.p_holm,
        "significant": p.significant,
        "n": p.paired.n,
        "n_nan": p.paired.n_nan,
        "noise_sd": p.noise_sd,
        "within_noise": p.within_noise,
    }


# ---- computing it -----------------------------------------------------------------------


def analyse(
    table: Table,
    *,
    metrics: Sequence[str] | None = None,
    n_resamples: int = stats.N_RESAMPLES,
    seed: int = 0,
) -> Analysis:
    """All statistics of one table (see ``docs/leaderboard.md`` for what each means)."""
    candidates = [r for r in table.rows if not r.human]
    ranked = [r for r in candidates if r.done]
    unranked = [r for r in candidates if not r.done]
    human = [r for r in table.rows if r.human and r.done] + [r for r in table.rows if r.human and not r.done]
    shown = ranked + [r for r in human if r.done]
    cases = sorted({str(c.get("case_id")) for r in ranked for rec in r.done for c in rec.cases})
    present = {
        k
        for r in shown
        for rec in r.done
        for c in rec.cases
        for k, v in c.items()
        if k != "case_id" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    all_metrics = _metric_order(present)
    wanted = list(metrics) if metrics else list(RANK_METRICS)
    rank_metrics = [m for m in wanted if m in present and is_metric(m)]
    if not rank_metrics and not metrics:
        rank_metrics = [m for m in all_metrics if is_metric(m)][:5]
    row_stats = {
        r.key: {
            m: stats.row_stats([_values(rec, m) for rec in r.done], n_resamples=n_resamples, seed=seed)
            for m in all_metrics
        }
        for r in shown
    }
    mats = {r.key: {m: _run_matrix(r, m, cases) for m in rank_metrics} for r in ranked}
    case_values = {r.key: {m: case_means(mats[r.key][m]) for m in rank_metrics} for r in ranked}
    up = {m: metric_info(m).higher_is_better for m in rank_metrics}
    agg_rank, case_rank, combined = rank_rows(ranked, rank_metrics, row_stats, case_values, up)
    order = sorted(range(len(ranked)), key=lambda i: (combined.get(ranked[i].key, 0), ranked[i].label))
    ranked = [ranked[i] for i in order]
    stability, metric_stability = None, {}
    if len(ranked) > 1 and rank_metrics and cases:
        stability, metric_stability = rank_stability(
            ranked, rank_metrics, mats, up, combined, agg_rank, n_resamples=n_resamples, seed=seed
        )
    pairs, best, tied = pairwise(
        ranked, rank_metrics, row_stats, case_values, up, n_resamples=n_resamples, seed=seed
    )
    return Analysis(
        table=table,
        ranked=ranked,
        unranked=unranked,
        human=human,
        cases=cases,
        metrics=all_metrics,
        rank_metrics=rank_metrics,
        row_stats=row_stats,
        case_values=case_values,
        pooled={r.key: {m: _pooled(r, m) for m in rank_metrics} for r in shown},
        combined=combined,
        agg_rank=agg_rank,
        case_rank=case_rank,
        stability=stability,
        metric_stability=metric_stability,
        pairs=pairs,
        best=best,
        tied_best=tied,
        notes=row_notes(ranked + unranked + human, cases),
        info={r.key: _row_info(r) for r in ranked + unranked + human},
        seed=seed,
        n_resamples=n_resamples,
    )


def _metric_order(keys: Iterable[str]) -> list[str]:
    order = {k: i for i, k in enumerate(METRICS)}

    def sort_key(k: str) -> tuple[int, int, str]:
        if k in order:
            return (0, order[k], "")
        if is_metric(k):
            base = k.rsplit("_", 1)[0]
            return (0, order.get(base, len(order)), k)
        return (1, 0, k)

    return sorted(set(keys), key=sort_key)


def _float(v: Any) -> float:
    return math.nan if v is None or isinstance(v, bool) else float(v)


def _values(rec: Record, key: str) -> dict[str, float]:
    """``case id -> value`` of one run (NaN where the case has no value)."""
    return {str(case.get("case_id")): _float(case.get(key, math.nan)) for case in rec.cases}


def _pooled(row: Row, key: str) -> np.ndarray:
    """Every value of ``key`` of the row's done runs, run by run in record order (NaN where missing)."""
    return np.array([_float(c.get(key, math.nan)) for rec in row.done for c in rec.cases], dtype=np.float64)


def _run_matrix(row: Row, key: str, cases: Sequence[str]) -> np.ndarray:
    """``(runs, cases)`` values of ``key`` on the table's case axis (NaN where missing)."""
    return np.array([[_values(r, key).get(c, math.nan) for c in cases] for r in row.done], dtype=np.float64)


def _row_info(row: Row) -> RowInfo:
    secs = [r.train_seconds for r in row.done if isinstance(r.train_seconds, (int, float))]
    predictions = []
    for rec in row.done:
        entries = {str(c.get("case_id")): c for c in reversed(rec.cases)}  # the first entry of a case
        predictions += [
            Prediction(case, path, entries.get(case, {})) for case, path in rec.predictions.items()
        ]
    return RowInfo(
        params=next((r.params for r in row.done if r.params), None),
        train_seconds=float(np.mean(secs)) if secs else None,
        budget=budget(row),
        seeds=runs_text(row, "seed"),
        folds=runs_text(row, "fold"),
        records=[r.run_id for r in row.records],
        provenance=provenance(row),
        saved_probabilities=any(
            r.eval_settings.get("save_probabilities") and r.predictions for r in row.done
        ),
        predictions=predictions,
    )
