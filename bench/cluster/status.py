"""``segbench status [SWEEP.yaml] [--results DIR]``: where every run of a sweep stands.

A run is **done** or **failed** (its record), **running** (its claim is held, see
:func:`bench.cluster.queue.claim_holder`), **queued** (its latest SLURM submission is pending in
``squeue``) or **to run**. Without a sweep file every run id that the results folder knows of
(records, claims, SLURM submissions) is listed.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.cluster.queue import (
    QueueEntry,
    SlurmError,
    claim_holder,
    first_line,
    queue_entries,
    submitted_jobs,
)
from bench.errors import UserError
from bench.records import Record, load_record, load_records, record_path
from bench.records.store import DEFAULT_RESULTS

STATES = ("done", "running", "queued", "failed", "to run")


@dataclass(frozen=True)
class RunStatus:
    """One row of ``segbench status``."""

    run_id: str
    state: str
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``segbench status``."""
    parser.add_argument(
        "sweep",
        nargs="?",
        default=None,
        help="sweep YAML file (default: every run the results folder knows of)",
    )
    parser.add_argument(
        "--results", default=DEFAULT_RESULTS, help="folder of run records (default: %(default)s/)"
    )
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sweep field, as for `segbench run` (repeatable)",
    )


def _job_of(info: dict[str, Any]) -> str | None:
    """``<array>_<task>`` or the plain SLURM job id from a claim / worker dict."""
    if info.get("slurm_array_job_id") and info.get("slurm_array_task_id") is not None:
        return f"{info['slurm_array_job_id']}_{info['slurm_array_task_id']}"
    return info.get("slurm_job_id")


def _since(value: Any) -> str:
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError):
        return "?"


def _running_detail(info: dict[str, Any]) -> str:
    where = info.get("slurm_node") or info.get("host") or "?"
    job = _job_of(info)
    head = f"job {job} on {where}" if job else f"on {where}"
    return f"{head} (pid {info.get('pid', '?')}, since {_since(info.get('since'))})"


def run_status(
    results: Path,
    run_id: str,
    *,
    record: Record | None,
    submission: dict[str, Any] | None,
    queue: dict[str, QueueEntry],
) -> RunStatus:
    """The state and detail of one run from its record, claim and latest SLURM submission."""
    holder = claim_holder(results, run_id)
    if holder is not None:
        return RunStatus(run_id, "running", _running_detail(holder))
    status = None if record is None else record.status
    if record is not None and status == "done":
        job = _job_of(record.worker)
        attempt = record.attempt
        parts = [f"finished {record.finished_at or '?'}"]
        parts += [f"job {job}"] if job else []
        parts += [f"attempt {attempt}"] if isinstance(attempt, int) and attempt > 1 else []
        return RunStatus(run_id, "done", ", ".join(parts))
    job_id = None if submission is None else submission.get("job_id")
    entry = queue.get(job_id) if job_id else None
    if entry is not None and entry.active:
        why = f" ({entry.reason})" if entry.reason and entry.reason not in ("None", "(null)") else ""
        detail = f"job {job_id} {entry.state.lower()}{why}"
        if record is not None:
            detail += f"; last attempt failed: {first_line(record.error)}"
        return RunStatus(run_id, "queued", detail)
    if record is not None:
        return RunStatus(run_id, "failed", first_line(record.error) or f"status {status!r}")
    if job_id is not None and (submission or {}).get("submitted_at"):
        state = f" ({entry.state.lower()})" if entry is not None else ""
        return RunStatus(
            run_id, "to run", f"job {job_id} ended without a record{state}; log in {submission.get('logs')}"
        )
    return RunStatus(run_id, "to run", "")


def collect(results: Path, run_ids: list[str] | None = None) -> tuple[list[RunStatus], list[str]]:
    """Rows for ``run_ids`` (default: every run the folder knows of) and notes (bad files, squeue)."""
    results = Path(results)
    records, problems = load_records(results) if results.is_dir() else ([], [])
    notes = [f"{path}: {why}" for path, why in problems]
    by_id = {r.run_id: r for r in records}
    ledger = submitted_jobs(results)
    queue: dict[str, QueueEntry] = {}
    if ledger:
        try:
            queue = queue_entries()
        except SlurmError as e:
            notes.append(f"queue not read: {e}")
    if run_ids is None:
        claims = (
            [p.stem for p in (results / ".claims").glob("*.lock")] if (results / ".claims").is_dir() else []
        )
        run_ids = sorted({*by_id, *ledger, *claims})
    rows = []
    for run_id in run_ids:
        record = by_id.get(run_id)
        if record is None:
            record = load_record(record_path(results, run_id))
        rows.append(run_status(results, run_id, record=record, submission=ledger.get(run_id), queue=queue))
    return rows, notes


def render(rows: list[RunStatus]) -> str:
    """The status table plus a count per state."""
    head = ("run_id", "state", "detail")
    body = [(r.run_id, r.state, r.detail) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()
        for row in [head, tuple("-" * w for w in widths), *body]
    ]
    counts = Counter(r.state for r in rows)
    lines.append(f"{len(rows)} run(s): " + ", ".join(f"{counts[s]} {s}" for s in STATES))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``segbench status``: print the table; 0 (the states are information, not errors)."""
    run_ids = None
    if args.sweep is None and not args.override and not Path(args.results).is_dir():
        raise UserError(
            f"--results {args.results}: no such folder (give the sweep file to list its runs as to run)"
        )
    if args.sweep is not None or args.override:
        from bench.config import load_sweep

        run_ids = [cfg.run_id for cfg in load_sweep(args.sweep, args.override).expand()]
    rows, notes = collect(Path(args.results), run_ids)
    print(render(rows))
    for note in notes:
        print(f"note: {note}")
    return 0
