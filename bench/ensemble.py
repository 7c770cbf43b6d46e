"""Seed ensembles as leaderboard rows (``segbench ensemble``, docs/evaluate.md).

The runs of one leaderboard row differ only in seed (and fold); their ensemble is the voxel-wise
mean of their class probabilities, scored by ``evaluate_case`` exactly like a model. Input: the
row's done ``train`` records whose ``predictions`` npz files hold ``prob`` for every test case
(the runner saves them with ``eval.save_predictions: -1`` and ``eval.save_probabilities: true``).
Output: one record of kind ``ensemble`` per (row, fold) with ``min_members`` or more seeds,
method ``<row label> (ensemble of N seeds)``, ``members: [run_ids]``, and its own predictions.
An ensemble of an older member set of the same row is moved to ``<results>/.superseded/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bench.config import row_key
from bench.metrics import evaluate_case, reduce_cases
from bench.provenance import device_info
from bench.store import new_record, now, read_record, record_path, scan_records, write_json_atomic

_REQUIRED = "eval.save_predictions: -1 and eval.save_probabilities: true save them"


class EnsembleError(ValueError):
    """A member of an ensemble lacks what the ensemble needs; the message names the run and file."""


@dataclass
class RowGroup:
    """The done runs of one leaderboard row and fold (candidates for one ensemble)."""

    dataset: str
    key: str
    fold: int
    members: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""


def _is_train(rec: dict[str, Any]) -> bool:
    cfg = rec.get("config")
    return (
        rec.get("kind", "train") == "train"
        and rec.get("status") == "done"
        and isinstance(cfg, dict)
        and "model" in cfg
    )


def group_rows(records: Iterable[dict[str, Any]]) -> list[RowGroup]:
    """Done train records grouped by (dataset, row key, fold); members sorted by seed, then run id.

    A row's label is ``<model> / <loss>``, plus ``[row <hash>]`` when another row of the same
    dataset has the same model and loss names (e.g. two sizes), plus ``, fold k`` when the row
    has runs on several folds.
    """
    groups: dict[tuple[str, str, int], RowGroup] = {}
    for rec in records:
        if not _is_train(rec):
            continue
        cfg = rec["config"]
        key = row_key(cfg)
        ident = (cfg["dataset"]["name"], key, int(cfg.get("fold", 0)))
        groups.setdefault(ident, RowGroup(*ident)).members.append(rec)
    names: dict[tuple[str, str], set[str]] = defaultdict(set)
    folds: dict[tuple[str, str], set[int]] = defaultdict(set)
    for g in groups.values():
        cfg = g.members[0]["config"]
        names[(g.dataset, f"{cfg['model']['name']} / {cfg['loss']['name']}")].add(g.key)
        folds[(g.dataset, g.key)].add(g.fold)
    for g in groups.values():
        cfg = g.members[0]["config"]
        base = f"{cfg['model']['name']} / {cfg['loss']['name']}"
        g.label = base
        if len(names[(g.dataset, base)]) > 1:
            g.label += f" [row {hashlib.sha256(g.key.encode()).hexdigest()[:6]}]"
        if len(folds[(g.dataset, g.key)]) > 1:
            g.label += f", fold {g.fold}"
        g.members.sort(key=lambda r: (r["config"].get("seed", 0), r["run_id"]))
    return sorted(groups.values(), key=lambda g: (g.dataset, g.label))


def _wants_probabilities(results: Path, rec: dict[str, Any]) -> bool:
    """Whether a run saved (or was asked to save) probabilities."""
    if (rec["config"].get("eval") or {}).get("save_probabilities"):
        return True
    preds = rec.get("predictions") or {}
    first = next(iter(preds.values()), None)
    if first is None or not (results / first).is_file():
        return False
    try:
        with np.load(results / first) as z:
            return "prob" in z.files
    except Exception:  # noqa: BLE001 - unreadable: the member check names the run and the file
        return True


def _member_file(results: Path, rec: dict[str, Any], case_id: str) -> Path:
    rel = (rec.get("predictions") or {}).get(case_id)
    if rel is None:
        raise EnsembleError(
            f"run {rec['run_id']}: no saved prediction for test case {case_id!r} "
            f"(record {record_path(results, rec['run_id'])}; {_REQUIRED})"
        )
    path = results / rel
    if not path.is_file():
        raise EnsembleError(f"run {rec['run_id']}: prediction file {path} is missing")
    return path


def _read_member(path: Path, run_id: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - OSError, BadZipFile, ValueError ...
        raise EnsembleError(f"run {run_id}: cannot read {path} ({type(e).__name__}: {e})") from e
    if "prob" not in arrays:
        raise EnsembleError(f"run {run_id}: {path} holds no probabilities ('prob'); {_REQUIRED}")
    if "label" not in arrays:
        raise EnsembleError(f"run {run_id}: {path} holds no ground truth ('label')")
    return arrays


def mean_probabilities(
    results: Path, members: list[dict[str, Any]], case_id: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The members' mean ``prob (C, *spatial)`` float64 for one case, plus the first member's arrays.

    Raises:
        EnsembleError: a member lacks the file or its ``prob``, or the shapes / labels disagree.
    """
    total, first = None, None
    for rec in members:
        path = _member_file(results, rec, case_id)
        arrays = _read_member(path, rec["run_id"])
        prob = arrays["prob"].astype(np.float64)
        if first is None:
            first, total = arrays, prob
            continue
        if prob.shape != total.shape or not np.array_equal(arrays["label"], first["label"]):
            raise EnsembleError(
                f"run {rec['run_id']}: {path} does not match {members[0]['run_id']}'s case {case_id!r} "
                "(probability shape or ground truth differ)"
            )
        total += prob
    assert total is not None and first is not None
    return total / len(members), first


def _ensemble_id(group: RowGroup) -> str:
    cfg = group.members[0]["config"]
    ids = sorted(r["run_id"] for r in group.members)
    digest = hashlib.sha256(json.dumps([group.key, group.fold, ids]).encode()).hexdigest()[:12]
    loss = cfg["loss"]["name"].replace("*", "x")
    return f"ens__{group.dataset}__{cfg['model']['name']}__{loss}__f{group.fold}__{digest}"


def _supersede(results: Path, rec: dict[str, Any]) -> None:
    path = record_path(results, rec["run_id"])
    stamp = str(rec.get("finished_at", "unknown")).replace(":", "")
    dest = results / ".superseded" / f"{rec['run_id']}__{stamp}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        path.replace(dest)


def ensemble_group(results: Path, group: RowGroup, *, progress: bool = False) -> Path:
    """Score the ensemble of ``group`` and write its record (and predictions); returns the record path."""
    results = Path(results)
    run_id = _ensemble_id(group)
    members = group.members
    first_cfg = members[0]["config"]
    ev = first_cfg.get("eval") or {}
    case_ids = [c["case_id"] for c in members[0].get("cases", [])]
    for rec in members[1:]:
        other = {c["case_id"] for c in rec.get("cases", [])}
        for cid in case_ids:
            if cid not in other:
                raise EnsembleError(
                    f"run {rec['run_id']}: test case {cid!r} of {members[0]['run_id']} is missing"
                )
    started, start = now(), time.perf_counter()
    rows, predictions = [], {}
    for cid in tqdm(case_ids, desc=f"ensemble {group.label}", unit="case", disable=not progress):
        prob, first = mean_probabilities(results, members, cid)
        spacing = first["spacing"].tolist() if "spacing" in first else None
        fov = first["fov"].astype(bool) if "fov" in first else None
        metrics = evaluate_case(
            prob,
            first["label"].astype(np.int64),
            spacing=spacing,
            fov=fov,
            betti_patch=ev.get("betti_patch"),
            nsd_tolerance=ev.get("nsd_tolerance", 1.0),
        )
        rows.append({"case_id": cid, **metrics})
        rel = f"predictions/{run_id}/{cid}.npz"
        keep = {k: first[k] for k in ("image", "fov", "spacing") if k in first}
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            results / rel,
            pred=np.argmax(prob, axis=0).astype(np.uint8),
            label=first["label"],
            prob=prob.astype(np.float16),
            **keep,
        )
        predictions[cid] = rel
    n = len(members)
    method = f"{group.label} (ensemble of {n} seeds)"
    config = {
        "dataset": first_cfg["dataset"],
        "method": method,
        "eval": ev,
        "split": "test",
        "source": {"members": [r["run_id"] for r in members], "row_key": group.key, "fold": group.fold},
    }
    record = new_record(
        "ensemble",
        run_id,
        config_hash=hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12],
        status="done",
        config=config,
        method=method,
        members=[r["run_id"] for r in members],
        seeds=[r["config"].get("seed") for r in members],
        cases=rows,
        aggregates=reduce_cases(rows),
        split=members[0].get("split", {}),
        predictions=predictions,
        test_seconds=time.perf_counter() - start,
        device=device_info("cpu"),
        started_at=started,
    )
    record["finished_at"] = now()
    path = record_path(results, run_id)
    write_json_atomic(path, record)
    return path


def ensemble_rows(
    results: Path, *, min_members: int = 2, progress: bool = False, notes: list[str] | None = None
) -> list[Path]:
    """Write an ``ensemble`` record for every row (and fold) with ``min_members`` or more done seeds
    that saved probabilities; returns the paths written now (an existing ensemble of the same
    members is kept and not rewritten). Rows without saved probabilities are left out, with a
    line in ``notes`` when given.

    Raises:
        EnsembleError: a member of an eligible row lacks a prediction file or its probabilities
            (names the run and the file).
        ValueError: ``min_members < 2``.
    """
    if min_members < 2:
        raise ValueError(f"--min-members must be >= 2, got {min_members}")
    results = Path(results)
    records, _problems = scan_records(results)
    existing = [r for r in records if r.get("kind") == "ensemble"]
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
        run_id = _ensemble_id(group)
        old = read_record(record_path(results, run_id))
        for rec in existing:
            src = (rec.get("config") or {}).get("source") or {}
            if rec["run_id"] != run_id and src.get("row_key") == group.key and src.get("fold") == group.fold:
                _supersede(results, rec)
        if old is not None and old.get("status") == "done":
            notes.append(f"{where}: ensemble {run_id} exists")
            continue
        written.append(ensemble_group(results, group, progress=progress))
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segbench ensemble``."""
    parser.add_argument("--results", default="results", help="folder of records (default: results)")
    parser.add_argument(
        "--min-members", type=int, default=2, help="fewest seeds for an ensemble (default: 2)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """``segbench ensemble``: write the ensemble records; prints what was written and left out."""
    notes: list[str] = []
    paths = ensemble_rows(
        Path(args.results), min_members=args.min_members, progress=not args.quiet, notes=notes
    )
    for path in paths:
        rec = read_record(path) or {}
        dice = (rec.get("aggregates") or {}).get("dice", {}).get("mean")
        print(f"{rec.get('method')}: dice {dice:.4f} -> {path}" if dice is not None else str(path))
    for note in notes:
        print(f"note: {note}")
    print(f"{len(paths)} ensemble record(s) written in {args.results}/")
    return 0
