"""The SLURM client and the claims: what ``squeue`` lists, the submission ledger
``<results>/.slurm/submissions.jsonl`` (run id -> SLURM job id) and who holds a run's claim.

The read side of the SLURM executor (:mod:`bench.cluster.slurm`) and of ``segbench status``
(:mod:`bench.cluster.status`). A run's claim ``.claims/<run_id>.lock`` is held while a worker runs
it: tested with a non-blocking shared ``flock``, which fails while a worker holds the exclusive one;
the claim file says which process, host and SLURM job.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
