"""Subgroups: each leaderboard table's rows on the test cases of each value of a per-case metadata
key (``segbench leaderboard --by KEY``; docs/leaderboard.md, "Subgroups").

A dataset states its cases' metadata through ``SegDataModule.case_metadata`` (the release's names
for HRF and CHASE_DB1, ``case_metadata.csv`` in the dataset's root otherwise; docs/metadata.md),
resolved here from a table's records as :func:`bench.leaderboard.rows.case_groups` resolves the
case clusters: by the records' ``config.dataset.name`` and ``config.dataset.kwargs.root``.

For one table and one value of the key, each row gets the mean of the table's primary metric (the
first of :data:`~bench.leaderboard.analysis.RANK_METRICS` present, Dice by default) over the
group's cases and every done run, the 95 % interval the main table prints
(:func:`bench.leaderboard.stats.row_stats`: cases of a declared cluster averaged first, the cluster
formed within the group), the number of cases, and the rank of its mean within the group (``min``
ties, a row without a value last; human baselines are shown, never ranked). The same is computed on
every case of the table (the ``all cases`` column), so a row's overall rank and its rank in a
group sit side by side.

Pure functions from records to :class:`SubgroupTable`, and its Markdown; nothing here draws or
caches, and the main leaderboard is not touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import UserError
from bench.leaderboard import stats
from bench.leaderboard.analysis import RANK_METRICS
from bench.leaderboard.format import fmt_num, row_title
from bench.leaderboard.rows import Row, Table, case_groups, group_records, slug, values_of
from bench.metrics.registry import is_metric, metric_bounds, metric_info
from bench.records.record import Record
from bench.records.store import load_records, write_text_atomic
from datamodules import DATASETS

MetadataSource = Callable[[str, Sequence[str], "str | None"], Mapping[str, Mapping[str, str]]]
"""``(dataset name, case ids, root or None) -> {case id: {key: value}}``."""


class SubgroupKeyError(UserError):
    """``--by KEY`` names a key that no table's dataset has (the message lists those it has)."""


def dataset_metadata(dataset: str, cases: Sequence[str], root: str | None) -> dict[str, dict[str, str]]:
    """``case id -> {key: value}`` that ``dataset`` states for ``cases``
    (``SegDataModule.case_metadata(cases, root=root)``); empty for an unknown dataset."""
    try:
        cls = DATASETS.get(dataset).factory
    except KeyError:
        return {}
    declare = getattr(cls, "case_metadata", None)
    if not callable(declare):
        return {}
    return {str(c): dict(v) for c, v in declare(list(cases), root=root).items()}


def table_root(table: Table) -> str | None:
    """The dataset root of a table's records (``config.dataset.kwargs.root``; a train run's first),
    None when no record names one (the dataset's default root is then read)."""
    recs = sorted((rec for row in table.rows for rec in row.records), key=lambda r: r.kind != "train")
    for rec in recs:
        root = (rec.dataset.get("kwargs") or {}).get("root")
        if root not in (None, ""):
            return str(root)
    return None


def primary_metric(table: Table) -> str | None:
    """The metric that orders the table (as the leaderboard picks it): the first of
    :data:`RANK_METRICS` with a value, else the first registered metric with one."""
    present = {
        k
        for row in table.rows
        for rec in row.done
        for c in rec.cases
        for k, v in c.items()
        if k != "case_id" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    for m in RANK_METRICS:
        if m in present:
            return m
    others = sorted(m for m in present if is_metric(m))
    return others[0] if others else None


@dataclass(frozen=True)
class GroupCell:
    """One row on one group's cases.

    Attributes:
        mean: the mean of the metric over every value of the row's done runs on the group's cases.
        lo, hi: its 95 % interval (:func:`bench.leaderboard.intervals.mean_interval`; NaN when it
            cannot be formed).
        design: the interval's design (``crossed``, ``nested``, ``units``, ``none``).
        n_cases: the group's cases with a value in at least one of the row's runs.
        n_units: the independent units of the interval (cases, or clusters of them).
        rank: rank of ``mean`` among the group's ranked rows (1 = best; NaN for a human baseline).
    """

    mean: float
    lo: float
    hi: float
    design: str
    n_cases: int
    n_units: int
    rank: float


@dataclass(frozen=True)
class GroupResult:
    """Every row of a table on the cases of one group (``value``; ``None``: every case)."""

    value: str | None
    cases: list[str]
    cells: dict[str, GroupCell]  # row key -> its cell

    def order(self, rows: Sequence[Row]) -> list[Row]:
        """``rows`` by rank in this group (human baselines last), then by title."""
        return sorted(rows, key=lambda r: (_sort_rank(self.cells[r.key].rank), row_title(r)))


@dataclass(frozen=True)
class SubgroupTable:
    """One leaderboard table split by the values of ``key``."""

    table: Table
    key: str
    metric: str
    higher_is_better: bool
    rows: list[Row]  # rows with a done run (human baselines included)
    overall: GroupResult  # every case of the table
    groups: list[GroupResult]  # one per value of the key, sorted by value
    without: list[str]  # the table's cases without the key


def _sort_rank(rank: float) -> float:
    return math.inf if math.isnan(rank) else rank


def group_result(
    rows: Sequence[Row],
    cases: Sequence[str],
    metric: str,
    *,
    higher_is_better: bool,
    clusters: Mapping[str, str],
    value: str | None = None,
) -> GroupResult:
    """Each row's mean, interval and rank on ``cases`` only.

    Args:
        rows: the rows to compare (a row with ``human`` set is summarised, never ranked).
        cases: the group's case ids; values of other cases are never read.
        metric: the per-case key of the records (``dice``).
        higher_is_better: the metric's direction (ranks).
        clusters: ``case id -> cluster`` of these cases (averaged first in the interval).
        value: the group's value (None: every case).
    """
    wanted = set(cases)
    summaries = {}
    for row in rows:
        per_run = [{c: v for c, v in values_of(rec, metric).items() if c in wanted} for rec in row.done]
        summaries[row.key] = stats.row_stats(per_run, groups=clusters, bounds=metric_bounds(metric))
    ranked = [r for r in rows if not r.human]
    means = np.array([summaries[r.key].reduction["mean"] for r in ranked], dtype=np.float64)
    ranks = stats.rank_scores(stats.signed(means, higher_is_better)) if ranked else np.array([])
    rank_of = {r.key: float(k) for r, k in zip(ranked, ranks, strict=True)}
    cells = {}
    for row in rows:
        s = summaries[row.key]
        have = {c for rec in row.done for c, v in values_of(rec, metric).items() if c in wanted}
        cells[row.key] = GroupCell(
            mean=float(s.reduction["mean"]),
            lo=float(s.ci.lo),
            hi=float(s.ci.hi),
            design=s.ci.design,
            n_cases=len(have),
            n_units=int(s.ci.n_units),
            rank=rank_of.get(row.key, math.nan),
        )
    return GroupResult(value, list(cases), cells)


def split_table(
    table: Table, key: str, metadata: Mapping[str, Mapping[str, str]], metric: str | None = None
) -> SubgroupTable | None:
    """``table`` split by ``key`` of ``metadata`` (``case id -> {key: value}``); None when none of
    the table's cases has the key or the table has no metric (``metric``: default its primary)."""
    metric = metric or primary_metric(table)
    rows = [r for r in table.rows if r.done]
    cases = table_case_ids(table)
    if metric is None or not rows:
        return None
    by_value: dict[str, list[str]] = {}
    for c in cases:
        v = metadata.get(c, {}).get(key)
        if v is not None:
            by_value.setdefault(str(v), []).append(c)
    if not by_value:
        return None
    up = metric_info(metric).higher_is_better if is_metric(metric) else True

    def result(members: list[str], value: str | None) -> GroupResult:
        clusters = case_groups(table.dataset, members)
        return group_result(rows, members, metric, higher_is_better=up, clusters=clusters, value=value)

    groups = [result(by_value[v], v) for v in sorted(by_value)]
    without = [c for c in cases if key not in metadata.get(c, {})]
    return SubgroupTable(table, key, metric, up, rows, result(cases, None), groups, without)


def table_case_ids(table: Table) -> list[str]:
    """Every case id of the done runs of a table's rows, sorted."""
    return sorted({str(c.get("case_id")) for r in table.rows for rec in r.done for c in rec.cases})


def subgroup_tables(
    records: Iterable[Record | Mapping[str, Any]],
    key: str,
    *,
    metric: str | None = None,
    metadata: MetadataSource = dataset_metadata,
) -> tuple[list[SubgroupTable], list[Table]]:
    """The tables of ``records`` split by ``key``, and the tables without it.

    Args:
        records: run records (a stored JSON dict is read as a :class:`Record`).
        key: the metadata key (``condition``).
        metric: the per-case metric (default: each table's primary metric).
        metadata: where a dataset's per-case metadata comes from (default: its DataModule).

    Raises:
        SubgroupKeyError: no table's dataset has ``key`` (the message lists the keys they have).
    """
    typed = [r if isinstance(r, Record) else Record.from_dict(r) for r in records]
    split, rest, available = [], [], {}
    for table in group_records(typed):
        meta = metadata(table.dataset, table_case_ids(table), table_root(table))
        for values in meta.values():
            for k in values:
                available.setdefault(k, set()).add(table.dataset)
        one = split_table(table, key, meta, metric)
        (split if one is not None else rest).append(one if one is not None else table)
    if not split:
        keys = "; ".join(f"{k} ({', '.join(sorted(d))})" for k, d in sorted(available.items()))
        raise SubgroupKeyError(
            f"--by {key}: no table's dataset has this per-case key; "
            + (f"keys available: {keys}" if keys else "none of them has per-case metadata (docs/metadata.md)")
        )
    return split, rest


# ---- Markdown ------------------------------------------------------------------------------


def _cell(c: GroupCell) -> str:
    if math.isnan(c.mean):
        return "–"
    return f"{fmt_num(c.mean)} [{fmt_num(c.lo, c.mean)}, {fmt_num(c.hi, c.mean)}]"


def _rank(c: GroupCell) -> str:
    return "human" if math.isnan(c.rank) else str(int(c.rank))


def _names(cases: Sequence[str], limit: int = 5) -> str:
    return ", ".join(cases[:limit]) + (", …" if len(cases) > limit else "")


def render_table(st: SubgroupTable) -> str:
    """One table's subgroup tables in Markdown: a line of counts, then one table per value."""
    t = st.table
    counts = ", ".join(f"{g.value} {len(g.cases)}" for g in st.groups)
    lines = [f"## {t.label}", ""]
    lines.append(
        f"Dataset `{t.dataset}`, metric `{st.metric}` ({'higher' if st.higher_is_better else 'lower'} "
        f"is better), {len(st.overall.cases)} test cases by `{st.key}`: {counts}."
    )
    if st.without:
        lines.append(
            f"No `{st.key}` for {len(st.without)} case(s), left out of the groups: {_names(st.without)}."
        )
    for g in st.groups:
        units = {c.n_units for c in g.cells.values() if c.n_units}
        unit_text = f", {max(units)} independent units" if units and max(units) != len(g.cases) else ""
        lines += ["", f"### {st.key} = {g.value} ({len(g.cases)} cases{unit_text})", ""]
        lines.append(
            f"| # | model / loss | {st.metric} [95 % CI] | cases | all cases: {st.metric} | # all cases |"
        )
        lines.append("|---:|---|---|---:|---|---:|")
        for row in g.order(st.rows):
            c, a = g.cells[row.key], st.overall.cells[row.key]
            cols = [_rank(c), row_title(row), _cell(c), str(c.n_cases), fmt_num(a.mean), _rank(a)]
            lines.append(f"| {' | '.join(cols)} |")
    return "\n".join(lines)


def render_subgroups(split: Sequence[SubgroupTable], rest: Sequence[Table], key: str) -> str:
    """Every split table in Markdown, with the legend and the tables not split."""
    head = [
        f"# Subgroups by `{key}`",
        "",
        f"Per value of `{key}`: each row's mean over the group's test cases and its runs, with the 95 % "
        "interval of the leaderboard computed on the group's cases only (cases of one cluster, such as "
        "a subject's two eyes, averaged first); # is the rank of that mean within the group (1 = best, "
        "ties share the best rank), # all cases the rank on every case. Groups are small: read the "
        'intervals before the ranks. docs/leaderboard.md, "Subgroups".',
    ]
    body = [render_table(st) for st in split]
    tail = []
    if rest:
        names = ", ".join(sorted(t.label for t in rest))
        tail = [f"Tables without `{key}` (not split): {names}."]
    return "\n\n".join(["\n".join(head), *body, *tail]) + "\n"


def subgroups_file(leaderboard: Path, key: str) -> Path:
    """``<leaderboard stem>_by_<key>.md`` beside the leaderboard file."""
    leaderboard = Path(leaderboard)
    return leaderboard.with_name(f"{leaderboard.stem}_by_{slug(key, 'key')}.md")


def write_subgroups(results: Path, leaderboard: Path, key: str) -> tuple[Path, str]:
    """Split the tables of the records under ``results`` by ``key``; write the Markdown to
    :func:`subgroups_file` (atomically; the leaderboard file itself is not touched).

    Returns:
        The file written and its text.

    Raises:
        UserError: no record under ``results``; ``key`` that no table's dataset has.
    """
    records, _ = load_records(Path(results)) if Path(results).is_dir() else ([], [])
    if not records:
        raise UserError(f"{results}: no run record found (`segbench run` writes them)")
    split, rest = subgroup_tables(records, key)
    text = render_subgroups(split, rest, key)
    out = subgroups_file(leaderboard, key)
    write_text_atomic(out, text)
    return out, text
