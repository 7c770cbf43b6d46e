"""Degenerate runs: a run whose test predictions collapsed to a constant mask (all background,
all foreground, one class everywhere) on more than half of its cases.

Such a run is never bold, never the best of a column and never the reference of a significance
mark; its row says so in its notes (docs/leaderboard.md, "Degenerate runs"). A run states it in
its record (``degenerate: {kind, cases}``, written by the runner and by ``segbench evaluate`` from
the predictions they scored). Records written before that field existed hold no predictions, so
the state is derived here from their per-case values (:func:`run_degeneracy`):

- **all background** is exact from the values alone (docs/metrics.md, "Empty masks"): an empty
  prediction of a class whose truth is not empty scores Dice 0, NSD 0 and HD95 inf, and one whose
  truth is empty too scores Dice NaN. A case is all background when every foreground class
  (``dice_1``, ``dice_2`` ... of a multiclass task, ``dice`` of a binary one) scores so. (A class
  whose truth is empty and whose prediction is not scores the same 0 / 0 / inf; such a case is
  counted only if every other class is empty as well.)
- **all foreground / one class everywhere** needs the truth: the constant baselines
  (``segbench evaluate --dataset NAME --constant foreground``, records with
  ``baseline: "constant"``) hold what the constant mask scores on each case. A case of a run is
  that constant when its overlap values (``dice``, ``iou``, ``cldice``, per class where the
  record has classes) equal the baseline's for the same dataset (name and data arguments) and
  case id to :data:`TOLERANCE` (NaN equals NaN). Overlap values depend on no metric setting
  (``betti_patch``, ``nsd_tolerance``), so any baseline of the dataset serves. Pass them with
  ``references=`` (:func:`load_references`).
- **nearly constant**: a case whose Dice and IoU (per class where the record has classes) are
  each within :data:`NEAR_TOLERANCE` of a constant baseline's, without being equal, predicted the
  constant on all but a few pixels (on the committed synthetic grid such runs differ from the
  all-foreground Dice by at most 0.004 on every case, the next run by 0.12). It counts as that
  constant; the run is then marked ``near=True``. clDice is not compared here: a few holes in an
  otherwise full mask change its skeleton completely.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.records import Record
from bench.records.record import DEGENERATE_KINDS, degenerate_state

KINDS = DEGENERATE_KINDS
TOLERANCE = 1e-9
"""Largest difference at which a run's overlap value equals the constant baseline's."""
NEAR_TOLERANCE = 0.005
"""Largest difference of Dice and IoU at which a case counts as nearly the constant baseline."""
_NEAR_KEY = re.compile(r"^(dice|iou)(_[0-9]+)?$")
OVERLAP_METRICS = ("dice", "iou", "cldice")
_OVERLAP_KEY = re.compile(r"^(dice|iou|cldice)(_[0-9]+)?$")
_CLASS_KEY = re.compile(r"^dice(_[0-9]+)$")
_NOT_DATA = ("root", "download", "cache_dir", "num_workers")  # dataset kwargs that change no case


@dataclass(frozen=True)
class RunDegeneracy:
    """One run: ``kind`` (one of :data:`KINDS`) and the case ids whose prediction was constant."""

    run_id: str
    kind: str
    cases: tuple[str, ...]
    derived: bool = False  # True: derived from per-case values (older record), not stated by the run
    near: bool = False  # True: some of the cases only nearly equal the constant (NEAR_TOLERANCE)


@dataclass(frozen=True)
class RowDegeneracy:
    """A row: how many of its runs are degenerate, and which."""

    n_runs: int
    runs: tuple[RunDegeneracy, ...] = field(default_factory=tuple)

    @property
    def n_degenerate(self) -> int:
        return len(self.runs)

    @property
    def all_degenerate(self) -> bool:
        """Every run of the row collapsed (the row is then never best nor a reference)."""
        return self.n_runs > 0 and self.n_degenerate == self.n_runs

    @property
    def any_degenerate(self) -> bool:
        return self.n_degenerate > 0


@dataclass(frozen=True)
class ConstantReferences:
    """What constant predictions score, per dataset: ``data key -> [(kind, {case_id: overlap
    values})]`` (:func:`load_references`)."""

    by_data: Mapping[str, tuple[tuple[str, Mapping[str, Mapping[str, float]]], ...]] = field(
        default_factory=dict
    )

    def for_record(self, record: Record) -> tuple[tuple[str, Mapping[str, Mapping[str, float]]], ...]:
        """The baselines of ``record``'s dataset (name and data arguments)."""
        return self.by_data.get(_data_key(record), ())

    def serving(self, records: Iterable[Record]) -> dict[str, Any]:
        """``data key -> baselines`` of the datasets of ``records``: every reference their
        degeneracy can depend on (the leaderboard cache keys a table's analysis on it)."""
        keys = {_data_key(rec) for rec in records}
        return {k: self.by_data[k] for k in sorted(keys) if k in self.by_data}


def _data_key(record: Record) -> str:
    ds = record.dataset
    kwargs = {k: v for k, v in (ds.get("kwargs") or {}).items() if k not in _NOT_DATA}
    return json.dumps([ds.get("name"), kwargs], sort_keys=True, default=str)


def _overlap(case: Mapping[str, Any]) -> dict[str, float]:
    return {k: v for k, v in case.items() if _OVERLAP_KEY.match(k) and isinstance(v, (int, float))}


def load_references(records: Iterable[Record]) -> ConstantReferences:
    """The constant baselines among ``records`` (done evaluation records with
    ``baseline: "constant"``), to pass as ``references=`` to :func:`run_degeneracy` /
    :func:`row_degeneracy`. Their kind is the one they state (``all-foreground`` ...)."""
    by_data: dict[str, list[tuple[str, dict[str, dict[str, float]]]]] = {}
    for rec in records:
        if rec.baseline != "constant" or not rec.done or not rec.cases:
            continue
        kind = str((rec.degenerate or {}).get("kind", "constant"))
        cases = {str(c.get("case_id")): _overlap(c) for c in rec.cases}
        by_data.setdefault(_data_key(rec), []).append((kind, cases))
    return ConstantReferences({k: tuple(v) for k, v in by_data.items()})


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= TOLERANCE


@functools.lru_cache(maxsize=256)
def _class_suffixes(keys: tuple[str, ...]) -> tuple[str, ...]:
    """The foreground classes of a case with these keys: ``("_1", "_2")``, ``("",)`` when binary."""
    return tuple(sorted({m.group(1) for k in keys if (m := _CLASS_KEY.match(k))})) or ("",)


def _is_all_background(case: Mapping[str, Any]) -> bool:
    """Whether a case's values are those of an empty prediction in every foreground class."""
    for sfx in _class_suffixes(tuple(case)):
        dice = case.get(f"dice{sfx}")
        if not isinstance(dice, (int, float)):
            return False
        if math.isnan(dice):
            continue  # truth and prediction both empty
        nsd, hd95 = case.get(f"nsd{sfx}"), case.get(f"hd95{sfx}")
        if dice != 0 or (nsd is not None and nsd != 0) or (hd95 is not None and hd95 != math.inf):
            return False
    return True


def _matches(values: Mapping[str, float], reference: Mapping[str, float], tolerance: float | None) -> bool:
    """Whether a case's overlap ``values`` (:func:`_overlap`) equal the constant baseline's (at least
    one compared); ``tolerance``: Dice and IoU within it instead (nearly equal)."""
    if tolerance is None:
        keys = [k for k in reference if k in values]
        return bool(keys) and all(_same(float(values[k]), float(reference[k])) for k in keys)
    keys = [k for k in reference if k in values and _NEAR_KEY.match(k)]
    return bool(keys) and all(
        _same(float(values[k]), float(reference[k]))
        or abs(float(values[k]) - float(reference[k])) <= tolerance
        for k in keys
    )


def _near_dice(case: Mapping[str, Any], reference: Mapping[str, float]) -> bool:
    """False when both Dice values are numbers further apart than :data:`NEAR_TOLERANCE`: then
    neither :func:`_matches` can hold (both compare Dice), and most cases end here."""
    a, b = case.get("dice"), reference.get("dice")
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or math.isnan(a) or math.isnan(b):
        return True
    return abs(float(a) - float(b)) <= NEAR_TOLERANCE


References = Sequence[tuple[str, Mapping[str, Mapping[str, float]]]]


def case_constant(case: Mapping[str, Any], references: References = ()) -> tuple[str, bool] | None:
    """``(kind, exact)``: the constant a case's per-case values show (a kind of :data:`KINDS`) and
    whether exactly (else nearly, :data:`NEAR_TOLERANCE`); None when none.

    ``references``: ``[(kind, {case_id: overlap values})]`` of the case's dataset
    (:meth:`ConstantReferences.for_record`).
    """
    if _is_all_background(case):
        return "all-background", True
    cid = str(case.get("case_id"))
    mine = [(kind, cases[cid]) for kind, cases in references if cid in cases and _near_dice(case, cases[cid])]
    if not mine:
        return None
    values = _overlap(case)
    for tolerance in (None, NEAR_TOLERANCE):
        for kind, reference in mine:
            if _matches(values, reference, tolerance):
                return kind, tolerance is None
    return None


def run_degeneracy(record: Record, references: ConstantReferences | None = None) -> RunDegeneracy | None:
    """The degeneracy of a run, or None.

    The one a record states (``record.degenerate``, ``derived=False``); for a record without the
    field, the one its per-case values show (``derived=True``): more than half of its cases all
    background or equal (or nearly equal, ``near=True``) to a constant baseline of ``references``
    (:func:`load_references`; without them only all-background is found).
    """
    d = record.degenerate
    if d:
        return RunDegeneracy(record.run_id, str(d.get("kind", "constant")), tuple(d.get("cases") or ()))
    if not record.cases:
        return None
    refs = references.for_record(record) if references is not None else ()
    found = {str(c.get("case_id")): case_constant(c, refs) for c in record.cases}
    state = degenerate_state({cid: f[0] if f else None for cid, f in found.items()})
    if not state:
        return None
    near = any(not found[cid][1] for cid in state["cases"])  # type: ignore[index]
    return RunDegeneracy(record.run_id, state["kind"], tuple(state["cases"]), derived=True, near=near)


def row_degeneracy(records: Sequence[Record], references: ConstantReferences | None = None) -> RowDegeneracy:
    """The degeneracy of a row's done runs (``references``: as for :func:`run_degeneracy`)."""
    runs = tuple(r for r in (run_degeneracy(rec, references) for rec in records) if r is not None)
    return RowDegeneracy(len(records), runs)
