"""The "trained on A → tested on B" matrices: a trained row's Dice on its own test split and on the
test splits of other datasets (docs/external.md).

An *external test* is an ``evaluation`` record whose ``config.source`` names the training run
(``run``) and its dataset (``trained_on``), and whose dataset is another one: what a sweep's
``eval.external`` writes, and what ``segbench evaluate --run RUN --dataset B`` writes by hand.
When the training run's record is among the records, the external test is shown in its training
table's matrix and left out of B's table (:func:`main_records`), where each seed would otherwise be
a row of its own; an external test whose training record is absent stays a row of B's table.

For each table of trained rows (:func:`bench.leaderboard.rows.group_records`, so the rows and their
labels are the main table's) with at least one external test, :func:`transfer_matrices` makes one
matrix: a row per model row with external tests, the first column its own test split, then one
column per external dataset (name and DataModule arguments). Each cell is the mean Dice over the
row's runs with the interval the main tables print (:func:`bench.leaderboard.stats.row_stats`,
:func:`bench.leaderboard.format.fmt_cell`) and the number of runs. Nothing here reads files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.leaderboard.format import fmt_cell
from bench.leaderboard.rows import NOT_SETTINGS, case_groups, group_records, setting_words, values_of
from bench.leaderboard.stats import RowStats, row_stats
from bench.metrics.registry import metric_bounds
from bench.records.record import Record

TRANSFER_METRIC = "dice"
"""The metric of every matrix cell: the leaderboard's primary metric."""


@dataclass(frozen=True)
class TransferColumn:
    """An external dataset: its name and DataModule arguments (no paths), and its column title."""

    key: str
    dataset: str
    kwargs: dict[str, Any]
    title: str = ""


@dataclass
class TransferCell:
    """The runs of one row tested on one dataset: the ids of the records used and their summary
    (None when no run of the row was tested there)."""

    records: list[str] = field(default_factory=list)
    stats: RowStats | None = None

    @property
    def runs(self) -> int:
        """How many runs (records) the cell pools."""
        return len(self.records)


@dataclass
class TransferRow:
    """One model row of the training table: its own test split and each external dataset."""

    label: str
    loss: str
    runs: list[str]
    own: TransferCell
    cells: dict[str, TransferCell]
    class_notes: list[str] = field(default_factory=list)


@dataclass
class TransferMatrix:
    """The matrix of one training table (``trained_on``, titled ``table``)."""

    trained_on: str
    table: str
    columns: list[TransferColumn]
    rows: list[TransferRow]

    @property
    def n_train(self) -> int:
        """Train records in the matrix (its first column)."""
        return sum(len(r.runs) for r in self.rows)

    @property
    def n_external(self) -> int:
        """External-test records in the matrix."""
        return sum(c.runs for r in self.rows for c in r.cells.values())


def _source(rec: Record) -> Mapping[str, Any]:
    src = rec.config.get("source") if isinstance(rec.config, Mapping) else None
    return src if isinstance(src, Mapping) else {}


def _is_external(rec: Record, train_ids: set[str]) -> bool:
    """An evaluation of a run among ``train_ids`` on a dataset other than the one it was trained on."""
    src = _source(rec)
    return (
        rec.kind == "evaluation"
        and src.get("run") in train_ids
        and rec.dataset.get("name") != src.get("trained_on")
    )


def _train_ids(records: Iterable[Record]) -> set[str]:
    return {r.run_id for r in records if r.kind == "train"}


def main_records(records: Sequence[Record]) -> list[Record]:
    """``records`` without the external tests shown in a matrix (their training record is present)."""
    ids = _train_ids(records)
    return [r for r in records if not _is_external(r, ids)]


def _column(rec: Record) -> TransferColumn:
    ds = rec.dataset
    kwargs = {k: v for k, v in (ds.get("kwargs") or {}).items() if k not in NOT_SETTINGS}
    name = str(ds.get("name", "?"))
    return TransferColumn(json.dumps([name, kwargs], sort_keys=True, default=str), name, kwargs)


def _titled(columns: Iterable[TransferColumn]) -> list[TransferColumn]:
    """Columns sorted by dataset; a dataset with several columns names the arguments that differ."""
    cols = sorted(columns, key=lambda c: (c.dataset, c.key))
    out = []
    for c in cols:
        peers = [o for o in cols if o.dataset == c.dataset]
        keys = sorted({k for o in peers for k in o.kwargs})
        differ = [k for k in keys if len({json.dumps(o.kwargs.get(k), default=str) for o in peers}) > 1]
        words = ", ".join(setting_words(k, c.kwargs.get(k)) for k in differ)
        title = f"{c.dataset} ({words})" if words else c.dataset
        out.append(TransferColumn(c.key, c.dataset, c.kwargs, title))
    return out


def _cell(dataset: str, recs: Sequence[Record]) -> TransferCell:
    if not recs:
        return TransferCell()
    recs = sorted(recs, key=lambda r: r.run_id)
    per_run = [values_of(r, TRANSFER_METRIC) for r in recs]
    cases = sorted({c for v in per_run for c in v})
    summary = row_stats(per_run, groups=case_groups(dataset, cases), bounds=metric_bounds(TRANSFER_METRIC))
    return TransferCell([r.run_id for r in recs], summary)


def _class_notes(train: Sequence[Record], tests: Sequence[Record]) -> list[str]:
    """Class names of an external dataset that differ from the training data's (compared by index)."""
    own = {tuple(r.split.get("class_names") or ()) for r in train} - {()}
    notes = set()
    for t in tests:
        theirs = tuple(t.split.get("class_names") or ())
        for names in own:
            if theirs and theirs != names:
                name = t.dataset.get("name")
                notes.add(f"{name} names its classes {', '.join(theirs)} ({', '.join(names)} when trained)")
    return sorted(notes)


def transfer_matrices(records: Sequence[Record]) -> list[TransferMatrix]:
    """One :class:`TransferMatrix` per table of trained rows that have external tests (by dataset,
    then table title)."""
    train = [r for r in records if r.kind == "train"]
    ids = _train_ids(train)
    tests: dict[str, list[Record]] = {}
    for rec in records:
        if _is_external(rec, ids) and rec.done:
            tests.setdefault(str(_source(rec)["run"]), []).append(rec)
    out = []
    for table in group_records(train):
        rows, columns = [], {}
        for row in table.rows:
            done = row.done
            mine = [t for r in done for t in tests.get(r.run_id, [])]
            if not mine:
                continue
            by_col: dict[str, list[Record]] = {}
            for t in mine:
                col = _column(t)
                columns[col.key] = col
                by_col.setdefault(col.key, []).append(t)
            cells = {k: _cell(columns[k].dataset, v) for k, v in by_col.items()}
            own = _cell(table.dataset, done)
            ids_ = [r.run_id for r in done]
            rows.append(TransferRow(row.label, row.loss, ids_, own, cells, _class_notes(done, mine)))
        if rows:
            out.append(TransferMatrix(table.dataset, table.label, _titled(columns.values()), rows))
    return out


# ---- Markdown ---------------------------------------------------------------------------------


def _cell_md(cell: TransferCell | None) -> str:
    if cell is None or cell.stats is None:
        return "–"
    return f"{fmt_cell(cell.stats)} n={cell.runs}"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_transfer_md(matrices: Sequence[TransferMatrix]) -> list[str]:
    """The Markdown section of the matrices (no lines when there is none)."""
    if not matrices:
        return []
    lines = ["## Trained on A → tested on B", ""]
    for m in matrices:
        head = ["model", "loss", f"{m.trained_on} (own test)", *[c.title for c in m.columns]]
        lines += [f"### Trained on {m.trained_on}: {m.table}", ""]
        lines += ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
        for row in m.rows:
            cells = [_md(row.label), _md(row.loss), _cell_md(row.own)]
            cells += [_cell_md(row.cells.get(c.key)) for c in m.columns]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", _sentence(m), ""]
    return lines


def _sentence(m: TransferMatrix) -> str:
    """What the matrix's numbers are and which records they come from, from the matrix itself."""
    others = ", ".join(c.title for c in m.columns)
    text = (
        f"Cells: mean {TRANSFER_METRIC} [95% interval, as in the tables above] over the test cases of "
        f"the row's runs; n: runs. The {m.trained_on} column is each row's own test split, from its "
        f"{m.n_train} train record(s) (the {m.table} table); {others}: each dataset's test split, "
        f"from {m.n_external} `evaluation` record(s) whose `source.run` names one of those runs "
        "(`eval.external` or `segbench evaluate --run`), shown here and not as rows of those datasets' "
        "tables."
    )
    short = [
        f"{row.label} / {row.loss} on {c.title}: {row.cells[c.key].runs} of {len(row.runs)} runs"
        for row in m.rows
        for c in m.columns
        if c.key in row.cells and row.cells[c.key].runs < len(row.runs)
    ]
    missing = [
        f"{row.label} / {row.loss} on {c.title}"
        for row in m.rows
        for c in m.columns
        if c.key not in row.cells
    ]
    if short:
        text += f" Not every run tested: {'; '.join(short)}."
    if missing:
        text += f" Not tested: {'; '.join(missing)}."
    notes = sorted({n for row in m.rows for n in row.class_notes})
    if notes:
        text += f" Classes compared by label index: {'; '.join(notes)}."
    return _md(text)
