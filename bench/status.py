"""``segbench status [SWEEP.yaml] [--results DIR]``: where every run of a sweep stands.

Also the read side of the SLURM executor (:mod:`bench.slurm`): ``squeue`` and the submission
ledger ``<results>/.slurm/submissions.jsonl`` (run id -> SLURM job id).

A run is **done** or **failed** (its record), **running** (its claim ``.claims/<run_id>.lock``
is held: tested with a non-blocking shared ``flock``, which fails while a worker holds the
exclusive one; the claim file says which process, host and SLURM job), **queued** (its latest
SLURM submission is pending in ``squeue``) or **to run**. Without a sweep file every run id that
the results folder knows of (records, claims, SLURM submissions) is listed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.store import read_record, record_path, scan_records

STATES = ("done", "running", "queued", "failed", "to run")
# squeue states in which a job still holds (or will hold) its run; others are final.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)


class SlurmError(ValueError):
    """A SLURM client is missing, a command failed, or a SLURM option is malformed (one line)."""


def first_line(text: Any) -> str:
    """The first line of an error message (``""`` for none)."""
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


@dataclass(frozen=True)
class QueueEntry:
    """One job (or array task, ``<array>_<task>``) as ``squeue`` lists it."""

    job_id: str
    state: str
    node: str
    reason: str

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


def _slurm_command(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        raise SlurmError(f"{cmd[0]} not found: --executor slurm needs the SLURM client commands on PATH")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{cmd[0]} did not answer within 120 s (is slurmctld up?)") from None
    if proc.returncode != 0:
        first = (proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}").splitlines()[0]
        raise SlurmError(f"{' '.join(cmd[:2])} failed: {first}")
    return proc.stdout


def queue_entries() -> dict[str, QueueEntry]:
    """This user's jobs in the SLURM queue by job id, array tasks one by one (``squeue --me -r``)."""
    out = _slurm_command(["squeue", "--me", "-h", "-r", "-o", "%i|%T|%N|%r"])
    entries = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            entries[parts[0]] = QueueEntry(*parts)
    return entries


def ledger_path(results: Path) -> Path:
    """The submission ledger of a results folder (one JSON object a line)."""
    return Path(results) / ".slurm" / "submissions.jsonl"


def submitted_jobs(results: Path) -> dict[str, dict[str, Any]]:
    """The latest submission of every run id: ``{run_id: {"job_id", "submitted_at", "logs"}}``."""
    path = ledger_path(results)
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash while appending
        if not isinstance(entry, dict) or not isinstance(entry.get("tasks"), dict):
            continue
        for run_id, job_id in entry.get("tasks", {}).items():
            out[run_id] = {
                "job_id": job_id,
                "submitted_at": entry.get("submitted_at"),
                "logs": entry.get("logs"),
            }
    return out


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
    parser.add_argument("--results", default="results", help="folder of run records (default: results)")
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sweep field, as for `segbench run` (repeatable)",
    )


def claim_holder(results: Path, run_id: str) -> dict[str, Any] | None:
    """Who holds the run's claim (the claim file's JSON, ``{}`` if unreadable), or None when nobody does."""
    path = Path(results) / ".claims" / f"{run_id}.lock"
    try:
        fh = open(path)  # noqa: SIM115 - closed below; read-only is enough for a shared flock
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                info = {}
            return info if isinstance(info, dict) else {}
        fcntl.flock(fh, fcntl.LOCK_UN)
        return None


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
    record: dict[str, Any] | None,
    submission: dict[str, Any] | None,
    queue: dict[str, QueueEntry],
) -> RunStatus:
    """The state and detail of one run from its record, claim and latest SLURM submission."""
    holder = claim_holder(results, run_id)
    if holder is not None:
        return RunStatus(run_id, "running", _running_detail(holder))
    status = None if record is None else record.get("status")
    if status == "done":
        job = _job_of(record.get("worker") or {})
        attempt = record.get("attempt")
        parts = [f"finished {record.get('finished_at', '?')}"]
        parts += [f"job {job}"] if job else []
        parts += [f"attempt {attempt}"] if isinstance(attempt, int) and attempt > 1 else []
        return RunStatus(run_id, "done", ", ".join(parts))
    job_id = None if submission is None else submission.get("job_id")
    entry = queue.get(job_id) if job_id else None
    if entry is not None and entry.active:
        why = f" ({entry.reason})" if entry.reason and entry.reason not in ("None", "(null)") else ""
        detail = f"job {job_id} {entry.state.lower()}{why}"
        if status is not None:
            detail += f"; last attempt failed: {first_line(record.get('error'))}"
        return RunStatus(run_id, "queued", detail)
    if status is not None:
        return RunStatus(run_id, "failed", first_line(record.get("error")) or f"status {status!r}")
    if job_id is not None and (submission or {}).get("submitted_at"):
        state = f" ({entry.state.lower()})" if entry is not None else ""
        return RunStatus(
            run_id, "to run", f"job {job_id} ended without a record{state}; log in {submission.get('logs')}"
        )
    return RunStatus(run_id, "to run", "")


def collect(results: Path, run_ids: list[str] | None = None) -> tuple[list[RunStatus], list[str]]:
    """Rows for ``run_ids`` (default: every run the folder knows of) and notes (bad files, squeue)."""
    results = Path(results)
    records, problems = scan_records(results) if results.is_dir() else ([], [])
    notes = [f"{path}: {why}" for path, why in problems]
    by_id = {r["run_id"]: r for r in records}
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
            record = read_record(record_path(results, run_id))
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
    if args.sweep is not None or args.override:
        from bench.config import load_sweep

        run_ids = [cfg.run_id for cfg in load_sweep(args.sweep, args.override).expand()]
    rows, notes = collect(Path(args.results), run_ids)
    print(render(rows))
    for note in notes:
        print(f"note: {note}")
    return 0
