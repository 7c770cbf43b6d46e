"""Executing an evaluation plan: score every case and write the ``evaluation`` record.

The record's id is ``eval__<dataset>__<method-slug>__<hash of the config and the input files'
SHA-256>`` (:func:`bench.records.evaluation_id`), so the same inputs give the same record and any
changed file gives a new one. A record whose predictions are constant (inside the field of view)
on more than half of its cases states it in ``degenerate`` (:func:`bench.records.record.degenerate_state`),
as a trained run does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from bench.evaluate.cases import PARENT, CaseResult, map_cases, score_case
from bench.evaluate.plan import EvaluationError, EvaluationPlan
from bench.metrics import reduce_cases
from bench.records import (
    Record,
    digest,
    evaluation_id,
    load_record,
    now,
    prediction_ref,
    record_path,
    supersede,
    write_record,
)
from bench.records.provenance import device_info
from bench.records.record import degenerate_state
from datamodules.download import file_digest


@dataclass
class EvaluationOutcome:
    """What :func:`execute` did: the record, where it is, and whether it existed already."""

    record: Record
    path: Path
    existed: bool = False


def _input_files(plan: EvaluationPlan) -> dict[str, dict[str, Any]]:
    """``{case_id: {pred, pred_sha256, gt, gt_sha256}}`` of the plan's files."""
    files: dict[str, dict[str, Any]] = {}
    for t in plan.tasks:
        entry = files.setdefault(t.case_id, {})
        if t.pred:
            entry.update(pred=Path(t.pred).name, pred_sha256=file_digest(t.pred))
        if t.gt:
            entry.update(gt=Path(t.gt).name, gt_sha256=file_digest(t.gt))
    return files


def _score(
    plan: EvaluationPlan, results: Path, run_id: str, saved: dict[str, str], workers: int, progress: bool
) -> list[CaseResult]:
    """Every task's result; the prediction files of the ``saved`` cases written on the way."""
    tasks = [
        replace(t, save=str(results / saved[t.case_id])) if t.case_id in saved else t for t in plan.tasks
    ]
    PARENT["dm"] = plan.datamodule
    try:
        return map_cases(score_case, tasks, plan.context, workers, progress, f"evaluate {plan.method}")
    finally:
        PARENT.clear()


def execute(
    plan: EvaluationPlan,
    results: Path,
    *,
    workers: int = 1,
    progress: bool = False,
    force: bool = False,
    save_predictions: int = 0,
) -> EvaluationOutcome:
    """Evaluate every task of ``plan`` and write its ``evaluation`` record under ``results``.

    ``save_predictions``: write the prediction of the first N cases (by case id; -1: all) as
    ``<results>/predictions/<run_id>/<case_id>.npz`` (listed in the record's ``predictions``),
    as the runner does, so plots can show the method; it does not change the record's id.

    A done record with the same id is kept (returned with ``existed=True``) unless ``force``,
    which moves it to ``<results>/.superseded/`` first (:func:`bench.records.supersede`).

    Raises:
        EvaluationError: no case could be evaluated (the first problems are named).
    """
    results = Path(results)
    if save_predictions < -1:
        raise EvaluationError(f"--save-predictions must be -1 (all) or >= 0, got {save_predictions}")
    files = _input_files(plan)
    config = {
        "dataset": {"name": plan.dataset, "kwargs": plan.dataset_kwargs},
        "method": plan.method,
        "eval": asdict(plan.context.settings),
        "split": plan.split,
    }
    source = {**plan.source, "files": files}
    inputs = {"config": config, "source": {k: v for k, v in source.items() if not k.endswith("_dir")}}
    inputs["cases"] = [(t.case_id, t.empty) for t in plan.tasks]
    if "constant" in plan.source:  # only then: the ids of other evaluations stay as they were
        inputs["constant"] = plan.source["constant"]
    run_id = evaluation_id(plan.dataset, plan.method, inputs)
    path = record_path(results, run_id)
    old = load_record(path)
    if old is not None and old.done and not force:
        return EvaluationOutcome(old, path, existed=True)
    supersede(
        results,
        run_id,
        "re-evaluated with --force" if old is not None and old.done else "replaced an evaluation that failed",
    )
    started, start = now(), time.perf_counter()
    order = sorted(t.case_id for t in plan.tasks)
    keep = order if save_predictions < 0 else order[:save_predictions]
    saved = {cid: prediction_ref(run_id, cid) for cid in keep}
    out = _score(plan, results, run_id, saved, workers, progress)
    problems = list(plan.problems) + [r.problem for r in out if r.problem]
    rows = sorted((r.row for r in out if r.row is not None), key=lambda r: r["case_id"])
    if not rows:
        shown = "; ".join(f"{p['file']}: {p['problem']}" for p in problems[:3]) or "no cases"
        raise EvaluationError(f"no case could be evaluated ({len(problems)} problem(s)): {shown}")
    for r in out:
        if r.kind:
            files.setdefault(r.case_id, {})["kind"] = r.kind
    scored = {r["case_id"] for r in rows}
    skipped = {**plan.split_info.get("skipped", {})}
    degenerate = degenerate_state({r.case_id: r.constant for r in out if r.row is not None})
    left_out = set(plan.truth_ids) - scored
    skipped.update({p["case_id"]: p["problem"] for p in problems if p["case_id"] in left_out})
    record = Record.evaluation(
        run_id,
        config_hash=digest(config),
        config={**config, "source": source},
        method=plan.method,
        **({"baseline": plan.baseline} if plan.baseline else {}),
        cases=rows,
        aggregates=reduce_cases(rows),
        split={**plan.split_info, "skipped": skipped},
        problems=problems,
        **({"degenerate": degenerate} if degenerate else {}),
        **({"predictions": {c: saved[c] for c in sorted(saved) if c in scored}} if saved else {}),
        test_seconds=time.perf_counter() - start,
        device={**device_info("cpu"), "workers": workers},
        started_at=started,
    )
    record.finished_at = now()
    return EvaluationOutcome(record, write_record(results, record))
