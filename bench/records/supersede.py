"""Supersede: a record that is replaced (a forced re-run, a re-evaluation, an ensemble of a newer
member set) is moved to ``<results>/.superseded/<run_id>__<finished_at>.json``, never deleted nor
edited, and the run's work folder and prediction files go with it, so nothing left under the
results folder belongs to a record that is no longer shown. The run's kept weights
(``<results>/models/<run_id>/``) move beside the superseded record, to
``<results>/.superseded/<run_id>__<finished_at>.model/`` (git ignores them, as it ignores
``models/``).

Each move appends a line to ``<results>/.superseded/index.jsonl`` (run id, file, when, why, the
commit that replaced it); the leaderboard lists them in its provenance section. The folder is part
of the results and is committed with them."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.records.predictions import PREDICTIONS
from bench.records.provenance import git_state
from bench.records.record import MODELS, now
from bench.records.store import load_record, record_path

SUPERSEDED = ".superseded"
INDEX = "index.jsonl"


@dataclass(frozen=True)
class Superseded:
    """One replaced record: which run, where its record went, when and why."""

    run_id: str
    path: str  # relative to the results folder
    superseded_at: str
    reason: str
    by_commit: str


def _append_index(results: Path, entry: dict[str, Any]) -> None:
    path = results / SUPERSEDED / INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def superseded(results: Path) -> list[Superseded]:
    """Every replaced record of ``results`` from the index, oldest first (unreadable lines skipped)."""
    path = Path(results) / SUPERSEDED / INDEX
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            d = json.loads(line)
            out.append(
                Superseded(
                    str(d["run_id"]),
                    str(d["path"]),
                    str(d.get("superseded_at", "?")),
                    str(d.get("reason") or "no reason given"),
                    str(d.get("by_commit") or "?"),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return out


def supersede(results: Path, run_id: str, reason: str = "re-run with --force") -> Path | None:
    """Move the record of ``run_id`` aside (its kept weights beside it), note ``reason`` in the
    index and remove its ``.work`` folder and predictions.

    Returns where the record went, or None when there was no readable record (then nothing is
    touched).
    """
    results = Path(results)
    path = record_path(results, run_id)
    old = load_record(path)
    if old is None:
        return None
    stamp = str(old.finished_at or "unknown").replace(":", "")
    dest = results / SUPERSEDED / f"{run_id}__{stamp}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    path.replace(dest)
    entry = {
        "run_id": run_id,
        "path": str(dest.relative_to(results)),
        "superseded_at": now(),
        "reason": reason,
        "by_commit": git_state().get("commit") or "no-git",
    }
    model = results / MODELS / run_id
    if model.is_dir():
        moved = dest.with_suffix(".model")
        shutil.rmtree(moved, ignore_errors=True)
        model.replace(moved)
        entry["model"] = str(moved.relative_to(results))
    _append_index(results, entry)
    shutil.rmtree(results / ".work" / run_id, ignore_errors=True)
    shutil.rmtree(results / PREDICTIONS / run_id, ignore_errors=True)
    return dest
