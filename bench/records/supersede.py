"""Supersede: a record that is replaced (a forced re-run, a re-evaluation, an ensemble of a newer
member set) is moved to ``<results>/.superseded/<run_id>__<finished_at>.json``, never deleted, and
the run's work folder and prediction files go with it, so nothing left under the results folder
belongs to a record that is no longer shown."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.records.predictions import PREDICTIONS
from bench.records.store import load_record, record_path

SUPERSEDED = ".superseded"


def supersede(results: Path, run_id: str) -> Path | None:
    """Move the record of ``run_id`` aside and remove its ``.work`` folder and predictions.

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
    shutil.rmtree(results / ".work" / run_id, ignore_errors=True)
    shutil.rmtree(results / PREDICTIONS / run_id, ignore_errors=True)
    return dest
