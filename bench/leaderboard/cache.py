"""A cache of each table's :class:`~bench.leaderboard.analysis.Analysis`, and the stamp of what was
drawn: re-rendering a leaderboard recomputes only the tables whose records changed.

An analysis is stored under ``<results>/.cache/leaderboard/`` (a hidden folder, so never read as a
record) under a key (:func:`table_key`) that digests everything it is computed from:

- the content of the table's records (every field, in table and row order) and its rows;
- the analysis options (:class:`AnalysisOptions`: metrics, seed, resamples, equivalence margin,
  all pairs);
- the constant baselines that tell its collapsed runs (they may come from another table of the
  dataset, :meth:`~bench.leaderboard.degenerate.ConstantReferences.serving`) and its case groups;
- the source of the code that computes it (:func:`code_digest`: the leaderboard package, the
  metric registry and reduction, the record type and row identity) and the versions of Python,
  numpy and scipy; the registered metrics' directions and the registered row statistics.

Any change to one of them gives another key, so a stale entry is never read; a table whose records
did not change is read back. Entries are written atomically (:func:`bench.records.store.write_atomic`);
an entry that cannot be read, does not unpickle, or is not what its key promises is recomputed and
overwritten, silently. The cache holds no record (a row is stored as its position in the table,
and the table itself comes from the records of this render), so it stays small.

The entries are Python pickles. That is acceptable for a cache segbench itself writes into the
user's own results folder, and only there: unpickling runs code, so a results folder is trusted
as much as the code that wrote it. Delete ``.cache/`` (or render with ``cache=False``) when a
results folder comes from elsewhere.

The stamp (:class:`DrawnStamp`, ``<results>/plots/.drawn.json``) records the digest of the analyses
the figures and the HTML report were last drawn from (and what the figures could not show), so
that ``segbench leaderboard`` redraws them only when the records (or options, or code) changed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import pickle
import platform
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy

from bench.leaderboard import stats
from bench.leaderboard.analysis import Analysis, table_cases
from bench.leaderboard.degenerate import ConstantReferences
from bench.leaderboard.rows import Table, case_groups
from bench.metrics.registry import METRICS
from bench.records.record import Record
from bench.records.store import write_atomic, write_text_atomic

CACHE_DIR = Path(".cache") / "leaderboard"
"""Where, under a results folder, the analyses are cached."""
STAMP = Path("plots") / ".drawn.json"
"""Where, under a results folder, the stamp of the drawn figures and report lives."""
FORMAT = 1
"""Version of the stored layout; a change makes every older entry a miss."""
KEEP_PER_TABLE = 4
"""Entries kept per table (other option sets, an older state of its records); older ones go."""
_ROOT = Path(__file__).resolve().parents[2]
CODE_FILES = (
    "bench/leaderboard/*.py",
    "bench/metrics/registry.py",
    "bench/metrics/reduction.py",
    "bench/records/record.py",
    "bench/records/identity.py",
)
"""Source files (globs under the repository root) an analysis depends on (:func:`code_digest`)."""
_ROW_FIELDS = ("ranked", "unranked", "human")  # stored as positions in table.rows


@dataclass(frozen=True)
class AnalysisOptions:
    """The options of :func:`~bench.leaderboard.analysis.analyse` (other than the table)."""

    metrics: tuple[str, ...] | None = None
    seed: int = 0
    n_resamples: int = stats.N_RESAMPLES
    equivalence_margin: float | None = None
    all_pairs: bool = False

    def kwargs(self) -> dict[str, Any]:
        """As keyword arguments of :func:`~bench.leaderboard.analysis.analyse`."""
        return {**asdict(self), "metrics": list(self.metrics) if self.metrics is not None else None}


def _sha(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def code_digest(paths: tuple[str, ...] = CODE_FILES, root: Path = _ROOT) -> str:
    """Digest of the source files ``paths`` (globs under ``root``) and of the Python, numpy and
    scipy versions: what an analysis is computed by. Read once per process."""
    h = hashlib.sha256()
    for pattern in paths:
        for path in sorted(root.glob(pattern)):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(f"{platform.python_version()} {np.__version__} {scipy.__version__}".encode())
    return h.hexdigest()


def registry_digest() -> str:
    """Digest of what the registries contribute at run time: each metric's direction and position
    (the ranking and column order) and each registered row statistic (name and code)."""
    metrics = [(k, m.higher_is_better, m.position, m.per_class_key) for k, m in METRICS.items()]
    row_stats = [
        (name, getattr(fn, "__module__", ""), getattr(fn, "__qualname__", ""), _code_of(fn))
        for name, fn in stats.ROW_STATISTICS.items()
    ]
    return _sha([metrics, row_stats])


def _code_of(fn: Any) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return repr(fn)
    return hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()


def record_digest(record: Record) -> str:
    """Digest of a record's content: its JSON object, pickled (nine times faster than encoding it as
    JSON again). Records of different content never pickle the same; a file read twice pickles the
    same (were it ever not to, the cost is a recomputed table, never a stale one)."""
    return hashlib.sha256(pickle.dumps(record.to_dict(), protocol=4)).hexdigest()


def table_key(
    table: Table,
    options: AnalysisOptions,
    references: ConstantReferences,
    *,
    code: str | None = None,
    digests: dict[int, str] | None = None,
) -> str:
    """The cache key of ``table``'s analysis (see the module docstring for what it digests).

    Args:
        code: the code digest (default :func:`code_digest`).
        digests: ``id(record) -> record_digest`` already computed (filled in here).
    """
    digests = {} if digests is None else digests
    records = [rec for row in table.rows for rec in row.records]
    for rec in records:
        if id(rec) not in digests:
            digests[id(rec)] = record_digest(rec)
    payload = {
        "format": FORMAT,
        "table": table.key,
        "rows": [
            [
                row.key,
                row.kind,
                row.model,
                row.loss,
                row.label,
                row.human,
                [digests[id(r)] for r in row.records],
            ]
            for row in table.rows
        ],
        "references": references.serving(records),
        "groups": case_groups(table.dataset, table_cases(table)),
        "options": asdict(options),
        "code": code_digest() if code is None else code,
        "registries": registry_digest(),
    }
    return _sha(payload)


def set_digest(keys: Iterable[str]) -> str:
    """Digest of a whole leaderboard's analyses from their keys (the stamp compares it)."""
    return _sha(list(keys))


class AnalysisCache:
    """The analyses of one results folder, by :func:`table_key` (``<results>/.cache/leaderboard/``)."""

    def __init__(self, folder: Path, *, code: str | None = None) -> None:
        """``code``: the code digest keys are made with (default :func:`code_digest`)."""
        self.folder = Path(folder)
        self.code = code_digest() if code is None else code
        self.hits = 0
        self.misses = 0

    @classmethod
    def of(cls, results: Path) -> AnalysisCache:
        """The cache of the results folder ``results``."""
        return cls(Path(results) / CACHE_DIR)

    def _path(self, table: Table, key: str) -> Path:
        return self.folder / f"{_sha(table.key)[:16]}-{key}.pkl"

    def load(self, table: Table, key: str) -> Analysis | None:
        """The cached analysis of ``table`` under ``key``, on ``table``'s own rows; None on a miss
        or an entry that is unreadable or not what the key promises."""
        try:
            with open(self._path(table, key), "rb") as fh:
                stored = pickle.load(fh)
            analysis = _restore(stored, table, key)
        except Exception:  # noqa: BLE001 - any damage to a cache entry means: recompute
            analysis = None
        if analysis is None:
            self.misses += 1
        else:
            self.hits += 1
        return analysis

    def store(self, table: Table, key: str, analysis: Analysis) -> None:
        """Write ``analysis`` (atomically) and drop the table's oldest entries beyond
        :data:`KEEP_PER_TABLE`; a folder that cannot be written is left alone (no cache)."""
        path = self._path(table, key)
        try:
            data = pickle.dumps(_stored(analysis, table, key), protocol=pickle.HIGHEST_PROTOCOL)
            write_atomic(path, lambda fh: fh.write(data))
            prefix = path.name.split("-")[0]
            mine = sorted(self.folder.glob(f"{prefix}-*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in mine[KEEP_PER_TABLE:]:
                old.unlink()
        except OSError:
            pass


def _stored(a: Analysis, table: Table, key: str) -> dict[str, Any]:
    position = {id(row): i for i, row in enumerate(table.rows)}
    values = {f.name: getattr(a, f.name) for f in fields(Analysis) if f.name not in ("table", *_ROW_FIELDS)}
    values["plot_notes"] = {}  # what a drawing skipped belongs to the stamp, not to the analysis
    return {
        "format": FORMAT,
        "key": key,
        "row_keys": [row.key for row in table.rows],
        "rows": {name: [position[id(r)] for r in getattr(a, name)] for name in _ROW_FIELDS},
        "fields": values,
    }


def _restore(stored: Any, table: Table, key: str) -> Analysis | None:
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or stored.get("key") != key:
        return None
    if stored.get("row_keys") != [row.key for row in table.rows]:
        return None
    values = stored["fields"]
    expected = {f.name for f in fields(Analysis)} - {"table", *_ROW_FIELDS}
    if not isinstance(values, dict) or set(values) != expected:
        return None
    rows = {name: [table.rows[i] for i in stored["rows"][name]] for name in _ROW_FIELDS}
    return Analysis(table=table, **rows, **values)


# ---- what was drawn ---------------------------------------------------------------------------


@dataclass
class DrawnStamp:
    """What the figures and the report of a results folder were last drawn from.

    Attributes:
        plots: :func:`set_digest` of the analyses the figures were drawn from ("" when never).
        report: the same for the HTML report, with whether it shows the figures.
        plot_notes: table slug -> what its figures could not show (``Analysis.plot_notes``).
    """

    plots: str = ""
    report: str = ""
    plot_notes: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def read(cls, results: Path) -> DrawnStamp:
        """The stamp of ``results`` (an empty one when missing or unreadable)."""
        try:
            data = json.loads((Path(results) / STAMP).read_text())
            return cls(str(data["plots"]), str(data["report"]), dict(data["plot_notes"]))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def write(self, results: Path) -> None:
        """Write it atomically (a folder that cannot be written keeps no stamp)."""
        with contextlib.suppress(OSError):
            write_text_atomic(Path(results) / STAMP, json.dumps(asdict(self), indent=1, sort_keys=True))


def plots_present(analyses: Sequence[Analysis], results: Path) -> bool:
    """Whether every figure the analyses call for (:meth:`Analysis.plot_names`) is on disk."""
    base = Path(results) / "plots"
    return all(os.path.isfile(base / a.table.slug / name) for a in analyses for _, name in a.plot_names())
