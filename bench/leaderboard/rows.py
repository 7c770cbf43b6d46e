"""Tables and rows: group run records into the leaderboard's tables and rows, and name them.

A *table* is one dataset with one set of dataset settings and metric settings (dataset kwargs,
``eval.betti_patch``, ``eval.nsd_tolerance``, the training patch size); a *row* is one configuration
(:func:`bench.records.identity.row_key`: the whole config except seed, fold and fields that cannot
change a result), pooling its runs over seeds and folds. A table's title is its sweep's name plus, in
words (:data:`SETTING_WORDS`), the settings that tell it from the same sweep's other tables of its
dataset. Evaluation and ensemble records are rows
labelled by their method; a human-baseline record (``baseline: "human"``) is a row shown outside the
ranking. Also here: the notes a row's records call for (failed runs, missing cases, fewer seeds).

Records come in as :class:`bench.records.Record`; nothing here computes a statistic.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.leaderboard.degenerate import RowDegeneracy
from bench.metrics.registry import CASE_PROTOCOLS, METRICS, is_metric, metric_info
from bench.records.identity import ROW_EXCLUDED, row_key, with_hash_defaults
from bench.records.record import Record
from datamodules import DATASETS
from models.registry import MODELS

TABLE_EVAL_KEYS = ("betti_patch", "nsd_tolerance")
"""Metric settings that change the numbers: different values make different tables (so do the dataset
kwargs and the training patch size)."""
NOT_SETTINGS = ("root", "download", "cache_dir", "num_workers")
"""Dataset kwargs that change no number: never a table setting (nor a column of a transfer matrix)."""
_EVAL_OPTIONAL = ("betti_patch", "patch_size", "budget")  # settings an evaluation may lack and still belong


@dataclass
class Row:
    """One configuration (train) or method (evaluation/ensemble) of a table, with all its records."""

    key: str
    kind: str
    model: str
    loss: str
    records: list[Record]
    human: bool = False
    label: str = ""

    @property
    def done(self) -> list[Record]:
        """Records with status ``done``, in run-id order."""
        return sorted((r for r in self.records if r.done), key=lambda r: r.run_id)

    @property
    def failed(self) -> list[Record]:
        """Records that are not done (failed or unknown status)."""
        return [r for r in self.records if not r.done]

    @property
    def config(self) -> dict[str, Any]:
        """The config of the row's first record."""
        return self.records[0].config


@dataclass
class Table:
    """One dataset with one set of settings; ``label`` is its title (:func:`group_records`: the sweep
    names, the dataset, and in words the settings that tell it from its sweep's other tables)."""

    key: str
    dataset: str
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    label: str = ""
    slug: str = ""
    sweeps: list[str] = field(default_factory=list)  # config["sweep"] of its records (sorted)


def value_text(v: Any) -> str:
    """A config value as labels and settings lines spell it: lists joined by ``-``, ``None`` as ``none``."""
    if isinstance(v, (list, tuple)):
        return "-".join(value_text(x) for x in v)
    if isinstance(v, dict):
        return ",".join(f"{k}={value_text(x)}" for k, x in sorted(v.items()))
    return "none" if v is None else str(v)


def slug(text: str, empty: str) -> str:
    """``text`` as a file or folder name (runs of other characters become ``-``; ``empty`` if none left)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or empty


def group_records(records: Iterable[Record]) -> list[Table]:
    """Tables (sorted by dataset, then title) of rows; records without a config (an object) are left out."""
    tables: dict[str, Table] = {}
    for rec in records:
        if not isinstance(rec.config, Mapping) or not rec.config:
            continue
        dataset, settings = _table_settings(rec)
        tkey = json.dumps([dataset, settings], sort_keys=True, default=str)
        table = tables.setdefault(tkey, Table(tkey, dataset, settings))
        rkey, model, loss = _row_identity(rec)
        row = next((r for r in table.rows if r.key == rkey), None)
        if row is None:
            row = Row(rkey, rec.kind, model, loss, [], human=rec.baseline == "human")
            table.rows.append(row)
        row.records.append(rec)
    tables = _attach_evaluations(tables)
    _label_tables(list(tables.values()))
    for table in tables.values():
        _label_rows(table)
    return sorted(tables.values(), key=lambda t: (t.dataset, t.label))


def _table_settings(rec: Record) -> tuple[str, dict[str, Any]]:
    ds = rec.dataset
    kwargs = {k: v for k, v in (ds.get("kwargs") or {}).items() if k not in NOT_SETTINGS}
    ev = rec.eval_settings
    settings = {**kwargs, **{k: ev[k] for k in TABLE_EVAL_KEYS if k in ev}}
    data = rec.config.get("data")
    if isinstance(data, Mapping):  # a train run: the patch size it used (dataset kwargs win)
        settings.setdefault("patch_size", data.get("patch_size"))
    budget = train_budget(rec.config.get("trainer"))
    if budget is not None:  # a train run: its budget, so one table never mixes budgets
        settings["budget"] = budget
    protocol = test_protocol(rec)
    if protocol is not None:  # e.g. a click loop: its Dice is after the clicks, never beside plain runs
        settings["protocol"] = protocol
    return str(ds.get("name", "?")), settings


def test_protocol(rec: Record) -> str | None:
    """The evaluation protocol a record's test ran under when it is not the plain one: the protocols
    (``bench.metrics`` registry, other than :data:`~bench.metrics.registry.CASE_PROTOCOLS`) of the
    metrics in its aggregates or case rows, joined by ``+`` (``interactive`` for a click loop);
    None for a plain test. Records of different protocols never share a table."""
    keys = set(rec.aggregates) | {k for case in rec.cases[:1] if isinstance(case, Mapping) for k in case}
    protocols = {metric_info(k).protocol for k in keys if is_metric(k)}
    found = protocols - set(CASE_PROTOCOLS)
    return "+".join(sorted(found)) or None


def train_budget(trainer: Any) -> str | None:
    """A train run's configured budget in words (``300 steps``, ``50 epochs``); None without one."""
    if not isinstance(trainer, Mapping):
        return None
    steps, epochs = trainer.get("max_steps"), trainer.get("max_epochs")
    if isinstance(steps, int) and steps > 0:
        return f"{steps:,} steps"
    if isinstance(epochs, int) and epochs > 0:
        return f"{epochs:,} epochs"
    return None


def _row_identity(rec: Record) -> tuple[str, str, str]:
    """``(row key, model cell, loss cell)`` of a record."""
    if rec.kind == "train":
        return row_key(rec.config), rec.model_name, rec.loss_name
    method = str(rec.method or rec.config.get("method") or rec.run_id)
    ident = {
        "kind": rec.kind,
        "dataset": rec.config.get("dataset"),
        "method": method,
        "eval": rec.config.get("eval"),
    }
    if rec.baseline:
        ident["baseline"] = rec.baseline
    return json.dumps(ident, sort_keys=True, default=str), method, "–"


def _compatible(ev: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """An evaluation (or human baseline) belongs to a table with the same settings, also when it has no
    patch size (it was not trained here) and no patch Betti errors (the other metrics are the same)."""
    keys = set(ev) | set(other)
    return all(ev.get(k) == other.get(k) or (k in _EVAL_OPTIONAL and ev.get(k) is None) for k in keys)


def _attach_evaluations(tables: dict[str, Table]) -> dict[str, Table]:
    """Move a table of evaluation/ensemble rows only into the compatible train tables of its dataset."""
    out = dict(tables)
    for key, table in tables.items():
        if not table.rows or any(r.kind == "train" for r in table.rows):
            continue
        hosts = [
            t
            for k, t in tables.items()
            if k != key
            and t.dataset == table.dataset
            and any(r.kind == "train" for r in t.rows)
            and _compatible(table.settings, t.settings)
        ]
        for host in hosts:
            host.rows.extend(table.rows)
        if hosts:
            del out[key]
    return out


def _count(one: str, many: str, default: str) -> Callable[[Any], str]:
    """Words of a count setting: ``32 test cases`` (``default`` for ``None``)."""
    return lambda v: default if v is None else f"{v} {one if v == 1 else many}"


def _size(what: str, default: str) -> Callable[[Any], str]:
    """Words of a size setting: ``training patch 64×64`` (``default`` for ``None``)."""
    return lambda v: default if v is None else f"{what} {'×'.join(value_text(x) for x in v)}"


def _named(what: str, default: str) -> Callable[[Any], str]:
    """Words of a setting read as ``what value`` (``default`` for ``None``)."""
    return lambda v: default if v is None else f"{what} {value_text(v)}"


def _every_n_epochs(v: Any) -> str:
    if v is None:
        return "no validation by epoch"
    return "validation every epoch" if v == 1 else f"validation every {v} epochs"


SETTING_WORDS: dict[str, Callable[[Any], str]] = {
    "num_test": _count("test case", "test cases", "the dataset's default test cases"),
    "num_train": _count("training case", "training cases", "the dataset's default training cases"),
    "num_val": _count("validation case", "validation cases", "the dataset's default validation cases"),
    "limit_cases": _count("case at most", "cases at most", "every case"),
    "num_folds": _count("fold", "folds", "the default folds"),
    "samples_per_epoch": _count("sample per epoch", "samples per epoch", "default samples per epoch"),
    "size": _size("images", "default image size"),
    "patch_size": _size("training patch", "the dataset's default training patch"),
    "annotator": _named("annotator", "default annotator"),
    "organs": _named("organs", "default organs"),
    "scale": _named("images scaled by", "images at full scale"),
    "batch_size": _named("batch", "default batch"),
    "split_seed": _named("split seed", "default split seed"),
    "betti_patch": _named("Betti patch", "Betti errors on whole images"),
    "nsd_tolerance": _named("NSD tolerance", "default NSD tolerance"),
    "multi_rater": lambda v: "every rater" if v else "one rater",
    "check_val_every_n_epoch": _every_n_epochs,
    "budget": lambda v: "default budget" if v is None else f"budget {v}",
    "protocol": lambda v: "plain test" if v is None else f"{v} test protocol",
}
"""How a table setting reads in a title or a settings line (``num_test 32`` -> ``32 test cases``); a
setting not listed reads ``name value``. One entry per setting: add one for a new dataset argument."""


def setting_words(key: str, value: Any) -> str:
    """``key = value`` of a table setting in words (:data:`SETTING_WORDS`)."""
    words = SETTING_WORDS.get(key)
    if words is not None:
        return words(value)
    name = key.replace("_", " ")
    return f"default {name}" if value is None else f"{name} {value_text(value)}"


def table_sweeps(table: Table) -> list[str]:
    """The sweep names (``config["sweep"]``) of a table's records, sorted; records without one (most
    evaluations, older records) add none."""
    names = {rec.config.get("sweep") for row in table.rows for rec in row.records}
    return sorted(str(n) for n in names if n not in (None, ""))


def _label_tables(tables: list[Table]) -> None:
    """Title every table by its sweep names (its dataset's name when it has none), the dataset when the
    sweep is not named after it, and, in words, the settings in which it differs from the dataset's
    other tables of the same sweep. Tables of other sweeps are not compared, so adding records of
    another sweep never renames a table those records did not join."""
    for t in tables:
        t.sweeps = table_sweeps(t)
    for t in tables:
        peers = [
            o
            for o in tables
            if o.dataset == t.dataset and (set(o.sweeps) & set(t.sweeps) or not (o.sweeps or t.sweeps))
        ]
        keys = sorted({k for o in peers for k in o.settings})
        differ = [k for k in keys if len({value_text(o.settings.get(k)) for o in peers}) > 1]
        lead = " + ".join(t.sweeps) or t.dataset
        title = lead if lead == t.dataset else f"{lead} on {t.dataset}"
        words = [setting_words(k, t.settings.get(k)) for k in differ]
        t.label = f"{title} ({', '.join(words)})" if words else title
        t.slug = slug(t.label, "table")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: d}


def _fraction_words(v: Any) -> str:
    return "every label" if v is None or float(v) >= 1 else f"{float(v) * 100:g} % labels"


LABEL_WORDS: dict[str, Callable[[Any], str]] = {
    "scheme.name": lambda v: "supervised" if v is None else value_text(v),
    "data.labelled_fraction": _fraction_words,
}
"""How a config field that tells apart rows of one model reads in the row's label (a field not
listed reads ``<last part of its path> value``): ``unet (mean_teacher, 10 % labels)``. A record
without the field (written before it existed) holds its default (``supervised``, every label)."""


def _label_order(key: str) -> tuple[int, str]:
    """Fields of :data:`LABEL_WORDS` first, in its order; then the others by path."""
    order = list(LABEL_WORDS)
    return (order.index(key), "") if key in LABEL_WORDS else (len(order), key)


def label_words(key: str, value: Any) -> str:
    """One config field of a row's label in words (:data:`LABEL_WORDS`)."""
    words = LABEL_WORDS.get(key)
    return words(value) if words is not None else f"{key.split('.')[-1]} {value_text(value)}"


def _set_by_presets(model: str, flats: Sequence[Mapping[str, Any]], key: str) -> bool:
    """Whether every row's ``key`` (a ``model.kwargs.*`` field) is absent or the value its own named
    size preset sets: a difference the differing ``preset`` already tells (``small`` sets
    ``base_features 8``, ``hippocampus`` leaves it to the plan)."""
    if not key.startswith("model.kwargs.") or key == "model.kwargs.preset" or model not in MODELS:
        return False
    presets = MODELS.get(model).meta.get("presets", {})
    option, missing = key.removeprefix("model.kwargs."), object()
    for flat in flats:
        value, named = flat.get(key, missing), flat.get("model.kwargs.preset")
        if value is not missing and presets.get(named, {}).get(option, missing) != value:
            return False
    return True


def _label_rows(table: Table) -> None:
    """Label rows that share a model name (and kind) by the config fields in which they differ."""
    skip = {*ROW_EXCLUDED, "model.name", "loss.name"}
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in table.rows:
        groups.setdefault((row.kind, row.model), []).append(row)
    for group in groups.values():
        flats = [
            {
                k: v
                for k, v in _flatten(with_hash_defaults(r.config)).items()
                if k not in skip and not k.startswith("dataset.")
            }
            for r in group
        ]
        present = {k for f in flats for k in f}
        for f in flats:  # an empty dict beside another row's entries under it is not a difference
            for k in [k for k, v in f.items() if v == {} and any(p.startswith(f"{k}.") for p in present)]:
                del f[k]
        keys = sorted({k for f in flats for k in f}, key=_label_order)
        differ = [k for k in keys if len({value_text(f.get(k)) for f in flats}) > 1]
        if "model.kwargs.preset" in differ:
            differ = [k for k in differ if not _set_by_presets(group[0].model, flats, k)]
        for row, flat in zip(group, flats):
            parts = [label_words(k, flat.get(k)) for k in differ if not k.startswith("loss.")]
            row.label = f"{row.model} ({', '.join(parts)})" if parts else row.model
            loss = [
                f"{k.split('.')[-1]} {value_text(flat.get(k))}"
                for k in differ
                if k.startswith("loss.kwargs.")
            ]
            if loss:
                row.loss = f"{row.loss} ({', '.join(loss)})"
        seen: dict[tuple[str, str], int] = {}
        for row in group:  # rows that still collide (e.g. kwargs that are dicts) get a short key
            n = seen[(row.label, row.loss)] = seen.get((row.label, row.loss), 0) + 1
            if n > 1:
                row.label += f" #{n}"


def row_notes(rows: Sequence[Row], cases: Sequence[str]) -> dict[str, list[str]]:
    """Per row key: failed runs, cases missing from the table's ``cases``, cases the data loader
    skipped, fewer seed×fold runs than the table's train rows."""
    train = [r for r in rows if r.kind == "train" and r.done and not r.human]
    train_keys = {r.key for r in train}
    seeds = {(rec.seed, rec.fold) for row in train for rec in row.done}
    notes: dict[str, list[str]] = {}
    for row in rows:
        out = []
        if row.failed:
            errs = sorted({str(r.error or r.status or "no status")[:80] for r in row.failed})
            out.append(f"{len(row.failed)} run(s) not done: {'; '.join(errs)}")
        have = {str(c.get("case_id")) for r in row.done for c in r.cases}
        missing = [c for c in cases if c not in have]
        if row.done and missing and not row.human:
            out.append(f"missing {len(missing)} of {len(cases)} cases ({', '.join(missing[:3])}…)")
        skipped = {k for r in row.done for k in (r.split.get("skipped") or {})}
        if skipped:
            out.append(f"{len(skipped)} case(s) skipped by the data loader")
        runs = {(r.seed, r.fold) for r in row.done}
        if row.key in train_keys and len(runs) < len(seeds):
            out.append(f"{len(runs)} of the table's {len(seeds)} seed×fold runs")
        notes[row.key] = out
    return notes


# ---- values of a row's records (no statistic) --------------------------------------------


def float_value(v: Any) -> float:
    """A stored value as a float (NaN for ``None`` and booleans)."""
    return math.nan if v is None or isinstance(v, bool) else float(v)


def values_of(rec: Record, key: str) -> dict[str, float]:
    """``case id -> value`` of one run (NaN where the case has no value)."""
    return {str(case.get("case_id")): float_value(case.get(key, math.nan)) for case in rec.cases}


def pooled_values(row: Row, key: str) -> np.ndarray:
    """Every value of ``key`` of the row's done runs, run by run in record order (NaN where missing)."""
    return np.array(
        [float_value(c.get(key, math.nan)) for rec in row.done for c in rec.cases], dtype=np.float64
    )


def run_matrix(row: Row, key: str, cases: Sequence[str]) -> np.ndarray:
    """``(runs, cases)`` values of ``key`` on the table's case axis (NaN where missing)."""
    return np.array([[values_of(r, key).get(c, math.nan) for c in cases] for r in row.done], dtype=np.float64)


def collapse_note(row: Row, deg: RowDegeneracy) -> str | None:
    """The note of a row with degenerate runs: ``collapsed: all-foreground on 32/32 cases`` when every
    run collapsed, ``2 of 3 runs collapsed (all-background: run ids)`` when some did; None otherwise."""
    if not deg.any_degenerate:
        return None
    kinds = ", ".join(sorted({r.kind for r in deg.runs}))
    if deg.all_degenerate:
        hit = sum(len(r.cases) for r in deg.runs)
        total = sum(len({str(c.get("case_id")) for c in rec.cases}) for rec in row.done)
        runs = f" (all {deg.n_runs} runs)" if deg.n_runs > 1 else ""
        return f"collapsed{runs}: {kinds} on {hit}/{total} cases"
    ids = ", ".join(f"`{r.run_id}`" for r in deg.runs)
    return f"{deg.n_degenerate} of {deg.n_runs} runs collapsed ({kinds}: {ids})"


def run_notes(row: Row, deg: RowDegeneracy) -> list[str]:
    """Collapsed runs (:func:`collapse_note`), and an interval without (or with little) training
    noise: one done run has no seed term, two give the seed term one degree of freedom."""
    out = [n for n in [collapse_note(row, deg)] if n]
    if len(row.done) == 1:
        out.append("1 run: interval ignores training noise")
    elif len(row.done) == 2:
        out.append("2 runs: interval barely covers training noise")
    return out


def case_groups(dataset: str, cases: Sequence[str]) -> dict[str, str]:
    """``case id -> group`` the dataset declares for ``cases`` (``SegDataModule.case_groups``); empty
    for an unknown dataset or when no group holds two of the cases (nothing to average)."""
    try:
        cls = DATASETS.get(dataset).factory
    except KeyError:
        return {}
    declare = getattr(cls, "case_groups", None)
    groups = dict(declare(list(cases))) if callable(declare) else {}
    sizes: dict[str, int] = {}
    for g in groups.values():
        sizes[g] = sizes.get(g, 0) + 1
    return groups if any(n > 1 for n in sizes.values()) else {}


def metric_order(keys: Iterable[str]) -> list[str]:
    """Metric keys in display order: registered metrics by registry position (per-class keys after
    their metric), then other keys by name."""
    order = {k: i for i, k in enumerate(METRICS)}

    def sort_key(k: str) -> tuple[int, int, str]:
        if k in order:
            return (0, order[k], "")
        if is_metric(k):
            base = k.rsplit("_", 1)[0]
            return (0, order.get(base, len(order)), k)
        return (1, 0, k)

    return sorted(set(keys), key=sort_key)
