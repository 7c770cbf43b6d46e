"""Run records under ``results/``: one JSON file per run, written atomically, never edited.

A record is ``<results>/<run_id>.json``. It is written with a temp file in the same folder,
``fsync`` and ``os.replace``, so a killed process leaves either the old file or the new one,
never half of one. Workers that share a results folder claim a run with an ``flock`` on
``<results>/.claims/<run_id>.lock`` (see :class:`Claim`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RECORD_SCHEMA = 1


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` via temp file + fsync + rename."""
    write_text_atomic(Path(path), json.dumps(data, indent=1, default=_jsonable))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via temp file + fsync + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def record_path(results: Path, run_id: str) -> Path:
    """Where the record of ``run_id`` lives."""
    return Path(results) / f"{run_id}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None if it does not exist or is not a readable record."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "run_id" in data else None


def iter_records(results: Path) -> Iterator[dict[str, Any]]:
    """Every record below ``results`` (recursively), in path order; skips non-records."""
    for path in sorted(Path(results).rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(results).parts):
            continue
        record = read_record(path)
        if record is not None:
            yield record


def is_done(results: Path, run_id: str) -> bool:
    """True when the run's record exists with status ``done``."""
    record = read_record(record_path(results, run_id))
    return record is not None and record.get("status") == "done"


# ---- claims for several workers on one results folder --------------------------------


class Claim:
    """An exclusive claim on one run, held as an ``flock`` on ``.claims/<run_id>.lock``.

    The kernel drops the lock when the holder dies (even by ``kill -9``), so a dead worker's
    claim expires by itself; the lock file only records who holds it, for people.
    """

    def __init__(self, path: Path, fh: Any) -> None:
        self.path = path
        self._fh = fh

    def release(self) -> None:
        """Give the run back (the lock file stays; it holds no state)."""
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim(results: Path, run_id: str) -> Claim | None:
    """Claim ``run_id`` for this process, or return None when a live worker holds it."""
    path = Path(results) / ".claims" / f"{run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - the handle lives as long as the claim
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
    fh.flush()
    return Claim(path, fh)
