"""Seed ensembles as leaderboard rows (``segbench ensemble``, docs/evaluate.md).

The runs of one leaderboard row differ only in seed (and fold); their ensemble is the voxel-wise
mean of their class probabilities, scored by ``case_metrics`` exactly like a model; when the row's
runs post-process (``eval.postprocess``, a part of the row's identity, so every member has it), the
ensemble's argmax is post-processed the same way and, as in a run's record, each case keeps the
plain argmax's metrics under ``raw``. Input: the
row's done ``train`` records whose ``predictions`` npz files hold ``prob`` for every test case
(the runner saves them with ``eval.save_predictions: -1`` and ``eval.save_probabilities: true``).
Output: one record of kind ``ensemble`` per (row, fold) with ``min_members`` or more seeds,
method ``<row label> (ensemble of N seeds)``, ``members: [run_ids]``, and its own predictions.
An ensemble of an older member set of the same row is moved to ``<results>/.superseded/``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bench.metrics import MetricSettings, case_row, reduce_cases
from bench.records import (
    Record,
    digest,
    ensemble_id,
    load_record,
    load_records,
    now,
    prediction_arrays,
    prediction_ref,
    read_prediction,
    record_path,
    row_key,
    row_tag,
    supersede,
    write_prediction,
    write_record,
)
from bench.records.predictions import has_probabilities
from bench.records.provenance import device_info
from bench.records.store import DEFAULT_RESULTS
from models.inference import postprocess as apply_postprocess

_REQUIRED = "eval.save_predictions: -1 and eval.save_probabilities: true save them"


class EnsembleError(ValueError):
    """A member of an ensemble lacks what the ensemble needs; the message names the run and file."""


@dataclass
class RowGroup:
    """The done runs of one leaderboard row and fold (candidates for one ensemble)."""

    dataset: str
    key: str
    fold: int
    members: list[Record] = field(default_factory=list)
    label: str = ""

    @property
    def run_id(self) -> str:
        """The id of this group's ensemble record (:func:`bench.records.ensemble_id`)."""
        return ensemble_id(self.members[0].config, self.key, self.fold, [r.run_id for r in self.members])


def _is_train(rec: Record) -> bool:
    return rec.kind == "train" and rec.done and isinstance(rec.config, dict) and "model" in rec.config


def group_rows(records: Iterable[Record]) -> list[RowGroup]:
    """Done train records grouped by (dataset, row key, fold); members sorted by seed, then run id.

    A row's label is ``<model> / <loss>``, plus ``[row <hash>]`` when another row of the same
    dataset has the same model and loss names (e.g. two sizes), plus ``, fold k`` when the row
    has runs on several folds.
    """
    groups: dict[tuple[str, str, int], RowGroup] = {}
    for rec in records:
        if not _is_train(rec):
            continue
        ident = (str(rec.dataset["name"]), row_key(rec.config), int(rec.config.get("fold", 0)))
        groups.setdefault(ident, RowGroup(*ident)).members.append(rec)
    names: dict[tuple[str, str], set[str]] = defaultdict(set)
    folds: dict[tuple[str, str], set[int]] = defaultdict(set)
    for g in groups.values():
        first = g.members[0]
        names[(g.dataset, f"{first.model_name} / {first.loss_name}")].add(g.key)
        folds[(g.dataset, g.key)].add(g.fold)
    for g in groups.values():
        first = g.members[0]
        base = f"{first.model_name} / {first.loss_name}"
        g.label = base
        if len(names[(g.dataset, base)]) > 1:
            g.label += f" [row {row_tag(g.key)}]"
        if len(folds[(g.dataset, g.key)]) > 1:
            g.label += f", fold {g.fold}"
        g.members.sort(key=lambda r: (r.config.get("seed", 0), r.run_id))
    return sorted(groups.values(), key=lambda g: (g.dataset, g.label))


def _wants_probabilities(results: Path, rec: Record) -> bool:
    """Whether a run saved (or was asked to save) probabilities."""
    if rec.eval_settings.get("save_probabilities"):
        return True
    first = next(iter(rec.predictions.values()), None)
    if first is None or not (results / first).is_file():
        return False
    try:
        return has_probabilities(results / first)
    except Exception:  # noqa: BLE001 - unreadable: the member check names the run and the file
        return True


def _member_file(results: Path, rec: Record, case_id: str) -> Path:
    rel = rec.predictions.get(case_id)
    if rel is None:
        raise EnsembleError(
            f"run {rec.run_id}: no saved prediction for test case {case_id!r} "
            f"(record {record_path(results, rec.run_id)}; {_REQUIRED})"
        )
    path = results / rel
    if not path.is_file():
        raise EnsembleError(f"run {rec.run_id}: prediction file {path} is missing")
    return path


def _read_member(path: Path, run_id: str) -> dict[str, np.ndarray]:
    try:
        arrays = read_prediction(path)
    except Exception as e:  # noqa: BLE001 - OSError, BadZipFile, ValueError ...
        raise EnsembleError(f"run {run_id}: cannot read {path} ({type(e).__name__}: {e})") from e
    if "prob" not in arrays:
        raise EnsembleError(f"run {run_id}: {path} holds no probabilities ('prob'); {_REQUIRED}")
    if "label" not in arrays:
        raise EnsembleError(f"run {run_id}: {path} holds no ground truth ('label')")
    return arrays


def mean_probabilities(
    results: Path, members: list[Record], case_id: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The members' mean ``prob (C, *spatial)`` float64 for one case, plus the first member's arrays.

    Raises:
        EnsembleError: a member lacks the file or its ``prob``, or the shapes / labels disagree.
    """
    total, first = None, None
    for rec in members:
        path = _member_file(results, rec, case_id)
        arrays = _read_member(path, rec.run_id)
        prob = arrays["prob"].astype(np.float64)
        if first is None:
            first, total = arrays, prob
            continue
        if prob.shape != total.shape or not np.array_equal(arrays["label"], first["label"]):
            raise EnsembleError(
                f"run {rec.run_id}: {path} does not match {members[0].run_id}'s case {case_id!r} "
                "(probability shape or ground truth differ)"
            )
        total += prob
    assert total is not None and first is not None
    return total / len(members), first


def _check_cases(members: list[Record]) -> list[str]:
    """The first member's test case ids; every other member must have each of them."""
    case_ids = [c["case_id"] for c in members[0].cases]
    for rec in members[1:]:
        other = {c["case_id"] for c in rec.cases}
        for cid in case_ids:
            if cid not in other:
                raise EnsembleError(f"run {rec.run_id}: test case {cid!r} of {members[0].run_id} is missing")
    return case_ids


def ensemble_group(results: Path, group: RowGroup, *, progress: bool = False) -> Path:
    """Score the ensemble of ``group`` and write its record (and predictions); returns the record path."""
    results = Path(results)
    run_id = group.run_id
    members = group.members
    ev = members[0].eval_settings
    postprocess = str((members[0].config.get("eval") or {}).get("postprocess", "none"))
    case_ids = _check_cases(members)
    started, start = now(), time.perf_counter()
    rows, predictions = [], {}
    for cid in tqdm(case_ids, desc=f"ensemble {group.label}", unit="case", disable=not progress):
        prob, first = mean_probabilities(results, members, cid)
        fov = first["fov"].astype(bool) if "fov" in first else None
        label = first["label"].astype(np.int64)
        spacing = first["spacing"].tolist() if "spacing" in first else None
        settings = MetricSettings.from_mapping(ev)
        # the members' eval.postprocess on the ensemble's argmax, the raw metrics kept (case_row)
        post = None
        if postprocess != "none":
            post = apply_postprocess(prob.argmax(0), prob.shape[0], postprocess)
        row = case_row(prob, label, post, spacing=spacing, fov=fov, settings=settings)
        rows.append({"case_id": cid, **row})
        rel = prediction_ref(run_id, cid)
        arrays = prediction_arrays(
            first["label"], prob=prob, image=first.get("image"), fov=fov, spacing=first.get("spacing")
        )
        write_prediction(results / rel, arrays)
        predictions[cid] = rel
    method = f"{group.label} (ensemble of {len(members)} seeds)"
    member_ids = [r.run_id for r in members]
    config: dict[str, Any] = {
        "dataset": members[0].config["dataset"],
        "method": method,
        "eval": members[0].config.get("eval") or {},
        "split": "test",
        "source": {"members": member_ids, "row_key": group.key, "fold": group.fold},
    }
    record = Record.ensemble(
        run_id,
        config_hash=digest(config),
        config=config,
        method=method,
        members=member_ids,
        seeds=[r.config.get("seed") for r in members],
        cases=rows,
        aggregates=reduce_cases(rows),
        split=members[0].split,
        predictions=predictions,
        test_seconds=time.perf_counter() - start,
        device=device_info("cpu"),
        started_at=started,
    )
    record.finished_at = now()
    return write_record(results, record)


def ensemble_rows(
    results: Path, *, min_members: int = 2, progress: bool = False, notes: list[str] | None = None
) -> list[Path]:
    """Write an ``ensemble`` record for every row (and fold) with ``min_members`` or more done seeds
    that saved probabilities; returns the paths written now (an existing ensemble of the same
    members is kept and not rewritten). Rows without saved probabilities are left out, with a
    line in ``notes`` when given. An ensemble of another member set of the same row and fold is
    superseded (:func:`bench.records.supersede`).

    Raises:
        EnsembleError: a member of an eligible row lacks a prediction file or its probabilities
            (names the run and the file).
        ValueError: ``min_members < 2``.
    """
    if min_members < 2:
        raise ValueError(f"--min-members must be >= 2, got {min_members}")
    results = Path(results)
    records, _problems = load_records(results)
    existing = [r for r in records if r.kind == "ensemble"]
    written = []
    notes = notes if notes is not None else []
    for group in group_rows(records):
        where = f"{group.dataset}: {group.label}"
        if len(group.members) < min_members:
            notes.append(f"{where}: {len(group.members)} done seed(s), fewer than {min_members}")
            continue
        if not any(_wants_probabilities(results, r) for r in group.members):
            notes.append(f"{where}: no saved probabilities ({_REQUIRED})")
            continue
        run_id = group.run_id
        old = load_record(record_path(results, run_id))
        for rec in existing:
            src = rec.config.get("source") or {}
            if rec.run_id != run_id and src.get("row_key") == group.key and src.get("fold") == group.fold:
                supersede(results, rec.run_id, "replaced by the ensemble of a newer member set")
        if old is not None and old.done:
            notes.append(f"{where}: ensemble {run_id} exists")
            continue
        written.append(ensemble_group(results, group, progress=progress))
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segbench ensemble``."""
    parser.add_argument(
        "--results", default=DEFAULT_RESULTS, help="folder of records (default: %(default)s/)"
    )
    parser.add_argument(
        "--min-members", type=int, default=2, help="fewest seeds for an ensemble (default: 2)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def readiness(results: Path, min_members: int = 2) -> tuple[int, int, int]:
    """``(rows, rows with too few seeds, rows without saved probabilities)`` of ``results``: what
    ``segbench ensemble`` checks before it writes anything (reads the records, not the arrays)."""
    groups = group_rows(load_records(Path(results))[0])
    few = sum(len(g.members) < min_members for g in groups)
    no_prob = sum(
        len(g.members) >= min_members and not any(_wants_probabilities(Path(results), r) for r in g.members)
        for g in groups
    )
    return len(groups), few, no_prob


NEEDS = (
    "an ensemble needs a row with at least {n} done seeds that saved every test case's probabilities: "
    "a sweep with `seeds: [0, 1, 2]` and `eval: {{save_predictions: -1, save_probabilities: true}}`"
)


def main(args: argparse.Namespace) -> int:
    """``segbench ensemble``: say up front when no row can be ensembled and why; else write the
    ensemble records and print what was written and, counted by reason, what was left out."""
    results = Path(args.results)
    if not results.is_dir():
        raise EnsembleError(f"--results {results}: no such folder")
    if args.min_members < 2:
        raise EnsembleError(f"--min-members: must be >= 2, got {args.min_members}")
    rows, few, no_prob = readiness(results, args.min_members)
    if rows == 0 or few + no_prob == rows:
        why = (
            "no finished training run"
            if rows == 0
            else f"of {rows} row(s), {few} have fewer than {args.min_members} done seeds and "
            f"{no_prob} saved no probabilities"
        )
        raise EnsembleError(f"{results}: nothing to ensemble ({why}); " + NEEDS.format(n=args.min_members))
    notes: list[str] = []
    paths = ensemble_rows(results, min_members=args.min_members, progress=not args.quiet, notes=notes)
    for path in paths:
        rec = load_record(path)
        dice = None if rec is None else rec.aggregates.get("dice", {}).get("mean")
        print(
            f"{rec.method}: dice {dice:.4f} -> {path}" if rec is not None and dice is not None else str(path)
        )
    left = {"seeds": few, "probabilities": no_prob}
    if any(left.values()):
        print(
            f"left out: {few} row(s) with fewer than {args.min_members} done seeds, {no_prob} without saved "
            f"probabilities ({_REQUIRED})"
        )
    for note in notes:
        if "exists" in note:
            print(f"note: {note}")
    print(f"{len(paths)} ensemble record(s) written in {results}/")
    return 0
