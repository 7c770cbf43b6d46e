"""The analysis of one table: every number and fact the outputs show, computed once.

:func:`analyse` turns a :class:`~bench.leaderboard.rows.Table` into an :class:`Analysis`: the rows in
the order of their rank on the primary metric (the first of the ranking set, Dice by default), each
row's statistics per metric, the per-metric ranks and the combined rank (kept as data), the rank
stability, each row's Holm-corrected comparison with its column's best, the all-pairs tests when
asked for (``all_pairs=True``: quadratic in rows), the per-row notes, and what each row's records
state (budget, seeds, provenance, saved predictions). Every renderer (Markdown, exports,
HTML, figures) reads the :class:`Analysis` and nothing else; :meth:`Analysis.to_dict` is its plain
form and the JSON export. What each number means: ``docs/leaderboard.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.leaderboard import stats
from bench.leaderboard.convergence import Convergence, convergence_note, row_convergence
from bench.leaderboard.degenerate import ConstantReferences, RowDegeneracy, load_references, row_degeneracy
from bench.leaderboard.format import legend, row_title
from bench.leaderboard.intervals import group_units
from bench.leaderboard.ranking import (
    BestComparison,
    PairResult,
    case_means,
    compare_with_best,
    is_topology,
    pairwise,
    rank_rows,
    rank_stability,
)
from bench.leaderboard.rowinfo import Prediction, RowInfo, row_info
from bench.leaderboard.rows import (
    Row,
    Table,
    case_groups,
    metric_order,
    pooled_values,
    row_notes,
    run_notes,
    slug,
    values_of,
)
from bench.leaderboard.stats import RowStats
from bench.metrics.registry import is_metric, metric_bounds, metric_info

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


@dataclass(kw_only=True)
class Analysis:
    """Everything the outputs show for one table."""

    table: Table
    ranked: list[Row]  # rows with a done run, best rank on the primary metric's mean first
    unranked: list[Row]  # rows without a done run (failed)
    human: list[Row]
    cases: list[str]
    metrics: list[str]  # every metric present, display order
    rank_metrics: list[str]  # the ranking set (present ones); the first is the primary metric
    row_stats: dict[str, dict[str, RowStats]]
    case_values: dict[str, dict[str, np.ndarray]]  # row -> metric -> (cases,) mean over runs
    pooled: dict[str, dict[str, np.ndarray]]  # row -> metric -> every value of its runs, record order
    combined: dict[str, float]  # row -> combined rank over the ranking set (data; not the order)
    agg_rank: dict[str, dict[str, float]]  # metric -> row -> rank of the mean
    case_rank: dict[str, dict[str, float]]  # metric -> row -> mean rank over cases
    stability: stats.RankStability | None  # of the primary metric's rank (the table's order)
    metric_stability: dict[str, stats.RankStability]
    pairs: dict[str, list[PairResult]]  # metric -> every pair of ranked rows; {} unless all_pairs
    best: dict[str, str]  # metric -> the best row among rows that are neither collapsed nor baselines
    vs_best: dict[str, dict[str, BestComparison]]  # metric -> row -> its comparison with the best
    notes: dict[str, list[str]]
    info: dict[str, RowInfo]
    seed: int
    n_resamples: int
    degeneracy: dict[str, RowDegeneracy] = field(default_factory=dict)
    convergence: dict[str, Convergence] = field(default_factory=dict)  # train rows: their curves' verdict
    collapsed: set[str] = field(default_factory=set)  # rows whose every run is degenerate
    baseline: set[str] = field(default_factory=set)  # rows of baseline records (never best)
    groups: dict[str, str] = field(default_factory=dict)  # case -> group (pairs and intervals)
    equivalence_margin: float | None = None
    plot_notes: dict[str, str] = field(default_factory=dict)  # plots skipped for a row, and why
    primary: str | None = None  # the metric that orders the rows (rank_metrics[0]; None: no metric)
    all_pairs: bool = False  # whether `pairs` was computed (`segbench leaderboard --all-pairs`)

    @property
    def rows(self) -> list[Row]:
        """Every row in display order: ranked, failed, human."""
        return self.ranked + self.unranked + self.human

    def _ranked_keys(self) -> dict[str, Row]:
        """``key -> row`` of :attr:`ranked` (kept while that list is unchanged: renderers ask per cell)."""
        memo = self.__dict__.get("_ranked_memo")
        if memo is None or memo[0] is not self.ranked or memo[1] != len(self.ranked):
            memo = (self.ranked, len(self.ranked), {r.key: r for r in self.ranked})
            self.__dict__["_ranked_memo"] = memo
        return memo[2]

    def role(self, row: Row) -> str:
        """``ranked``, ``human`` or ``failed``."""
        mine = self._ranked_keys().get(row.key)
        return (
            "ranked"
            if mine is not None and (mine is row or mine == row)
            else ("human" if row.human else "failed")
        )

    def ranked_row(self, key: str) -> Row:
        """The ranked row with key ``key``."""
        return self._ranked_keys()[key]

    def is_best(self, metric: str, key: str) -> bool:
        """True when row ``key`` has the best mean of ``metric`` (ties: every row with that mean) and is
        neither collapsed (every run degenerate) nor a baseline, nor, on a topology metric, a row
        with any collapsed run."""
        best = self.best.get(metric)
        if best is None or key not in self.row_stats or key not in self._ranked_keys():
            return False
        if key in self.collapsed or key in self.baseline:
            return False
        deg = self.degeneracy.get(key)
        if is_topology(metric) and deg is not None and deg.any_degenerate:
            return False
        if key == best:
            return True
        return bool(
            self.row_stats[key][metric].reduction["mean"] == self.row_stats[best][metric].reduction["mean"]
        )

    def mark(self, metric: str, key: str) -> str:
        """The marks of a cell: the comparison with the best (:attr:`BestComparison.mark`) and ``†``
        on a topology metric of a row with collapsed runs (read it beside an overlap metric)."""
        c = self.vs_best.get(metric, {}).get(key)
        marks = [c.mark] if c is not None and not self.is_best(metric, key) else []
        deg = self.degeneracy.get(key)
        if is_topology(metric) and deg is not None and deg.any_degenerate:
            marks.append("†")
        return " ".join(marks)

    def units_text(self) -> str:
        """What a pair is: ``8 cases`` or ``4 case groups (child 11, …)``."""
        if not self.groups:
            return f"{len(self.cases)} cases"
        names = sorted({self.groups.get(c, c) for c in self.cases})
        shown = ", ".join(names[:2]) + (", …" if len(names) > 2 else "")
        return f"{len(names)} case groups ({shown}) of {len(self.cases)} cases"

    def train_compute(self) -> tuple[set[int], set[str]]:
        """The CPU torch thread counts and the GPU names of the table's trained rows (a baseline's or
        a human row's evaluation time is not a training time): the times of a ``train s`` column
        compare only when these make one setting."""
        trained = [r for r in self.ranked + self.human if r.kind == "train" and r.key not in self.baseline]
        cpu = {t for r in trained for t in self.info[r.key].cpu_threads}
        return cpu, {g for r in trained for g in self.info[r.key].gpus}

    def legend_text(self) -> str:
        """The per-table legend (:func:`bench.leaderboard.format.legend`): units, family, the smallest
        reachable p, the margin, thread counts, the ranking's metric set."""
        m0 = self.rank_metrics[0] if self.rank_metrics else None
        threads, gpus = self.train_compute()
        return legend(
            self.n_resamples,
            self.seed,
            self.rank_metrics,
            units=self.units_text() if self.cases else "",
            n_compared=len(self.vs_best.get(m0, {})) if m0 else 0,
            n_pairs=len({self.groups.get(c, c) for c in self.cases}) if self.cases else None,
            margin=self.equivalence_margin,
            threads=sorted(threads),
            gpus=sorted(gpus),
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
        if any(len(rec.val_trace) > 1 for r in self.ranked for rec in r.done):
            names.append(("learning curves", "curves.png"))
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
            "primary": self.primary,
            "cases": self.cases,
            "bootstrap": {"n_resamples": self.n_resamples, "seed": self.seed, "confidence": 0.95},
            "case_groups": self.groups,
            "equivalence_margin": self.equivalence_margin,
            "rows": [self._row_dict(row, idx.get(row.key)) for row in self.rows],
            "all_pairs": self.all_pairs,
            "pairs": {m: [p.to_dict(label) for p in lst] for m, lst in self.pairs.items()},
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
            entry.update(ci_lo=s.ci.lo, ci_hi=s.ci.hi, ci_design=s.ci.design, ci_df=s.ci.df, n_runs=s.n_runs)
            entry.update(seed_sd=s.seed_sd, seed_share=s.seed_share, case_share=s.case_share)
            entry.update(interval_seed_sd=s.ci.seed_sd, interval_unit_sd=s.ci.unit_sd, n_units=s.ci.n_units)
            entry.update(s.extra)
            if m in self.agg_rank and row.key in self.agg_rank[m]:
                entry.update(
                    rank_of_mean=plain(self.agg_rank[m][row.key]),
                    mean_rank_over_cases=plain(self.case_rank[m][row.key]),
                )
                entry["best"] = self.is_best(m, row.key)
                c = self.vs_best.get(m, {}).get(row.key)
                if c is not None:
                    entry["vs_best"] = c.to_dict()
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
            "preset": info.preset,
            "torch_threads": info.torch_threads,
            "records": info.records,
            "notes": self.notes.get(row.key, []),
            "collapsed_runs": [r.run_id for r in self.degeneracy[row.key].runs]
            if row.key in self.degeneracy
            else [],
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


# ---- computing it -----------------------------------------------------------------------


def table_cases(table: Table) -> list[str]:
    """The case axis of a table: every case id of its ranked rows' done runs, sorted."""
    return sorted(
        {str(c.get("case_id")) for r in table.rows if not r.human for rec in r.done for c in rec.cases}
    )


class _Values:
    """``case id -> value`` of each (record, metric) as :func:`bench.leaderboard.rows.values_of`
    gives it, every metric of a record read in one pass over its cases (a row's matrices, its
    summary and its rank need them several times)."""

    def __init__(self, metrics: Sequence[str]) -> None:
        self.metrics = list(metrics)
        self._memo: dict[int, dict[str, dict[str, float]]] = {}

    def __call__(self, rec: Any, metric: str) -> dict[str, float]:
        maps = self._memo.get(id(rec))
        if maps is None:
            maps = self._memo[id(rec)] = {m: {} for m in self.metrics}
            nan = math.nan
            for case in rec.cases:
                cid = str(case.get("case_id"))
                for m, values in maps.items():
                    v = case.get(m, nan)
                    values[cid] = nan if v is None or v is True or v is False else float(v)
        return maps[metric] if metric in maps else values_of(rec, metric)

    def matrix(self, row: Row, metric: str, cases: Sequence[str]) -> np.ndarray:
        """``(runs, cases)`` values on the table's case axis (NaN where missing), as
        :func:`bench.leaderboard.rows.run_matrix` gives them."""
        maps = [self(rec, metric) for rec in row.done]
        return np.array([[v.get(c, math.nan) for c in cases] for v in maps], dtype=np.float64)


def _protocol_metrics(present: Sequence[str]) -> list[str]:
    """The metrics of an evaluation protocol other than plain segmentation that a table's records
    hold (an interactive run's ``noc85``, ``dice_at_1`` ...), in display order: they join the
    ranking set, so the tables show the numbers the protocol exists for."""
    return [m for m in present if is_metric(m) and metric_info(m).protocol != "segmentation"]


def analyse(
    table: Table,
    *,
    metrics: Sequence[str] | None = None,
    n_resamples: int = stats.N_RESAMPLES,
    seed: int = 0,
    equivalence_margin: float | None = None,
    references: ConstantReferences | None = None,
    all_pairs: bool = False,
) -> Analysis:
    """All statistics of one table (see ``docs/leaderboard.md`` for what each means).

    Rows are ordered by the rank of the primary metric's mean (``rank_metrics[0]``; ``min`` ties,
    then by label); a row with any collapsed run ranks last when that metric is a topology metric.

    ``equivalence_margin``: the margin of the TOST against the best (metric units); None: no
    equivalence claim is made. ``references``: the constant baselines that tell collapsed runs of
    older records (:func:`bench.leaderboard.degenerate.load_references`; default: this table's).
    ``all_pairs``: also test every pair of ranked rows (:attr:`Analysis.pairs`, the significance
    maps): ``m (m - 1) / 2`` paired bootstraps per metric, the slow part of a large table; the
    table itself needs only the ``m - 1`` comparisons with each column's best."""
    candidates = [r for r in table.rows if not r.human]
    ranked = [r for r in candidates if r.done]
    unranked = [r for r in candidates if not r.done]
    human = [r for r in table.rows if r.human and r.done] + [r for r in table.rows if r.human and not r.done]
    shown = ranked + [r for r in human if r.done]
    cases = table_cases(table)
    present = {
        k
        for r in shown
        for rec in r.done
        for c in rec.cases
        for k, v in c.items()
        if k != "case_id" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    all_metrics = metric_order(present)
    wanted = list(metrics) if metrics else [*RANK_METRICS, *_protocol_metrics(all_metrics)]
    rank_metrics = [m for m in wanted if m in present and is_metric(m)]
    if not rank_metrics and not metrics:
        rank_metrics = [m for m in all_metrics if is_metric(m)][:5]
    primary = rank_metrics[0] if rank_metrics else None
    groups = case_groups(table.dataset, cases)
    vals = _Values(all_metrics)
    row_stats: dict[str, dict[str, RowStats]] = {r.key: {} for r in shown}
    for m in all_metrics:
        summaries = stats.row_stats_many(
            [[vals(rec, m) for rec in r.done] for r in shown], groups=groups, bounds=metric_bounds(m)
        )
        for r, summary in zip(shown, summaries, strict=True):
            row_stats[r.key][m] = summary
    if references is None:
        references = load_references(rec for r in table.rows for rec in r.records)
    degeneracy = {r.key: row_degeneracy(r.done, references) for r in ranked + unranked + human}
    collapsed = {k for k, d in degeneracy.items() if d.all_degenerate}
    # a topology value of a row with any collapsed run is partly a constant mask's (an empty mask has
    # few components): such a row ranks last and is never best on topology metrics
    partly = {k for k, d in degeneracy.items() if d.any_degenerate}
    baseline = {r.key for r in ranked + human if any(rec.baseline for rec in r.records)}
    mats = {r.key: {m: vals.matrix(r, m, cases) for m in rank_metrics} for r in ranked}
    case_values = {r.key: {m: case_means(mats[r.key][m]) for m in rank_metrics} for r in ranked}
    up = {m: metric_info(m).higher_is_better for m in rank_metrics}
    agg_rank, case_rank, combined = rank_rows(ranked, rank_metrics, row_stats, case_values, up, partly)
    order = agg_rank.get(primary, {}) if primary else {}
    ranked = sorted(ranked, key=lambda r: (order.get(r.key, 0), r.label))
    metric_stability = {}
    if len(ranked) > 1 and rank_metrics and cases:
        metric_stability = rank_stability(
            ranked, rank_metrics, mats, up, agg_rank, n_resamples=n_resamples, seed=seed
        )
    pairs: dict[str, list[PairResult]] = {}
    if all_pairs:
        pairs = pairwise(
            ranked, rank_metrics, row_stats, case_values, up, n_resamples=n_resamples, seed=seed
        )[0]
    best, vs_best = _with_best(
        ranked,
        rank_metrics,
        row_stats,
        mats,
        up,
        cases,
        groups,
        collapsed | baseline,
        equivalence_margin,
        partly,
    )
    notes = row_notes(ranked + unranked + human, cases)
    for row in ranked + unranked + human:
        notes[row.key] = run_notes(row, degeneracy[row.key]) + notes[row.key]
    convergence = {
        r.key: row_convergence([rec.val_trace for rec in r.done]) for r in ranked if r.kind == "train"
    }
    for key, verdict in convergence.items():
        if verdict.status == "not converged":
            notes[key] = [convergence_note(verdict), *notes[key]]
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
        pooled={r.key: {m: pooled_values(r, m) for m in rank_metrics} for r in shown},
        combined=combined,
        agg_rank=agg_rank,
        case_rank=case_rank,
        stability=metric_stability.get(primary) if primary else None,
        metric_stability=metric_stability,
        pairs=pairs,
        best=best,
        vs_best=vs_best,
        notes=notes,
        degeneracy=degeneracy,
        convergence=convergence,
        collapsed=collapsed,
        baseline=baseline,
        groups=groups,
        equivalence_margin=equivalence_margin,
        info={r.key: row_info(r) for r in ranked + unranked + human},
        seed=seed,
        n_resamples=n_resamples,
        primary=primary,
        all_pairs=all_pairs,
    )


def _with_best(
    ranked: list[Row],
    rank_metrics: list[str],
    row_stats: dict[str, dict[str, RowStats]],
    mats: dict[str, dict[str, np.ndarray]],
    up: dict[str, bool],
    cases: list[str],
    groups: dict[str, str],
    never_best: set[str],
    margin: float | None,
    never_best_topology: set[str] = frozenset(),
) -> tuple[dict[str, str], dict[str, dict[str, BestComparison]]]:
    """Per metric the best row (best mean among the ranked rows not in ``never_best``, nor on a
    topology metric in ``never_best_topology``; ties: the first in table order) and every ranked
    row's comparison with it (:func:`compare_with_best`)."""
    best, vs_best = {}, {}
    for m in rank_metrics:
        excluded = never_best | (set(never_best_topology) if is_topology(m) else set())
        eligible = [r.key for r in ranked if r.key not in excluded]
        means = {k: row_stats[k][m].reduction["mean"] for k in eligible}
        defined = [k for k in eligible if not math.isnan(means[k])]
        if defined:
            best[m] = max(defined, key=lambda k: float(stats.signed(np.array(means[k]), up[m])))
            units = {r.key: group_units(mats[r.key][m], cases, groups)[0] for r in ranked}
            vs_best[m] = compare_with_best(ranked, best[m], units, margin=margin)
    return best, vs_best
