"""Run records on disk under ``results/``: one JSON file per run, written atomically, never edited.

Also the one atomic writer (:func:`write_atomic`) for every file under a results folder, the run
state that ``--dry-run`` and the workers read (:func:`run_state`, :func:`is_done`) and claims.

A record is ``<results>/<run_id>.json``; its layout is owned by :mod:`bench.records.record` and
described in ``docs/records.md``. It is written with a temp file in the same folder,
``fsync`` and ``os.replace``, so a killed process leaves either the old file or the new one,
never half of one. Workers that share a results folder claim a run with an ``flock`` on
``<results>/.claims/<run_id>.lock`` (see :class:`Claim`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from bench.faults import fault_point
from bench.records.record import RECORD_SCHEMA, Record, worker_info

DEFAULT_RESULTS = "runs"
"""The results folder of ``segbench run`` (and every command that reads runs) unless ``--results``
says otherwise. A checkout's committed reference records live under ``results/`` instead, so that a
user's first runs never mix with them nor re-render the committed ``leaderboard.md``."""

LEADERBOARD_POINTER = ".leaderboard"
"""A one-line file in a results folder naming, relative to the folder, where its leaderboard goes
when that is not ``<results>/leaderboard.md`` (the repository's ``results/.leaderboard`` says
``../leaderboard.md``)."""


def leaderboard_path(results: Path) -> Path:
    """Where the leaderboard of ``results`` goes: ``<results>/leaderboard.md``, or the file that
    ``<results>/.leaderboard`` names. One leaderboard per results folder: two folders side by side
    never overwrite each other's table.

    Raises:
        ValueError: the pointer file is unreadable, empty, or leaves the folder's parent.
    """
    results = Path(results)
    pointer = results / LEADERBOARD_POINTER
    if not pointer.is_file():
        return results / "leaderboard.md"
    try:
        target = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{pointer}: unreadable ({e})") from e
    out = (results / target).resolve() if target else None
    if out is None or not out.is_relative_to(results.resolve().parent) or out.suffix != ".md":
        raise ValueError(f"{pointer}: must name a .md file in {results} or beside it, got {target!r}")
    return out


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` via temp file + fsync + rename."""
    write_text_atomic(Path(path), json.dumps(data, indent=1, default=_jsonable))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via temp file + fsync + rename."""
    write_atomic(Path(path), lambda fh: fh.write(text), binary=False)


def write_atomic(path: Path, write: Callable[[IO[Any]], object], *, binary: bool = True) -> None:
    """Create or replace ``path`` with what ``write(file)`` writes, atomically.

    The data goes to ``.<name>.<pid>.tmp`` in the same folder, is flushed and fsynced, then
    renamed over ``path`` (and the folder fsynced where the OS allows it): a killed process leaves
    the old file or the new one, never half of one, plus at worst a temp file that
    :func:`clean_stale_temp` removes. Every file segbench writes under a results folder
    (records, prediction files, the leaderboard) goes through here.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        fault_point("atomic_write", path.name)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)


_TEMP = re.compile(r"^\..+\.(?P<pid>[0-9]+)\.tmp(\.npz)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temp(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Remove the temp files of atomic writes whose writer died (``.<name>.<pid>.tmp``, and a
    checkpoint's ``last.ckpt.tmp`` when no live process holds it). Returns what was removed.

    Only segbench's own temp-file names are touched; a live writer's file is kept.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*"):
        m = _TEMP.match(path.name)
        if m and path.is_file() and not _alive(int(m["pid"])):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


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
    """The stored JSON object at ``path``, or None if it does not exist or is not a readable record
    (:func:`load_record` gives the :class:`~bench.records.record.Record`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "run_id" in data else None


def write_record(results: Path, record: Record) -> Path:
    """Write ``record`` to its file under ``results`` atomically; returns the path."""
    path = record_path(results, record.run_id)
    write_json_atomic(path, record.to_dict())
    return path


def load_record(path: Path) -> Record | None:
    """The record at ``path`` as a :class:`~bench.records.record.Record`, or None (see
    :func:`read_record`)."""
    data = read_record(path)
    return None if data is None else Record.from_dict(data)


def _record_files(results: Path) -> Iterator[Path]:
    for path in sorted(Path(results).rglob("*.json")):
        rel = path.relative_to(results).parts
        if any(part.startswith(".") for part in rel) or rel[0] in _NOT_RECORDS:
            continue
        if len(rel) == 1 and path.stem == "leaderboard":  # `--format json` beside the records
            continue
        yield path


_NOT_RECORDS = ("plots", "predictions", "perf", "studies", "models", "uncertainty", "multirater", "explain")


def scan_records(results: Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Every record below ``results`` plus the JSON files that are not readable records.

    Returns ``(records, problems)``; a problem is ``(path, reason)`` for a file that is not valid
    JSON, not an object, has no ``run_id``, a ``schema`` newer than this segbench reads or a
    structural field of the wrong JSON type (``"cases": null``, ...). Never
    raises for a bad file: one stray file must not hide every other record.
    """
    records, problems = [], []
    for path in _record_files(Path(results)):
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as e:
            problems.append((path, f"unreadable: {e}"))
            continue
        except json.JSONDecodeError as e:
            problems.append((path, f"not valid JSON ({e.msg} at line {e.lineno})"))
            continue
        if not isinstance(data, dict) or "run_id" not in data:
            problems.append((path, "not a segbench record (no run_id)"))
            continue
        if not isinstance(data.get("schema", 1), int) or data.get("schema", 1) > RECORD_SCHEMA:
            problems.append((path, f"record schema {data.get('schema')!r} is newer than {RECORD_SCHEMA}"))
            continue
        wrong = _wrong_shape(data)
        if wrong:
            problems.append((path, wrong))
            continue
        records.append(data)
    return records, problems


_SHAPES: dict[str, type] = {"config": dict, "cases": list, "aggregates": dict, "split": dict, "git": dict}


def _wrong_shape(data: dict[str, Any]) -> str:
    """Why a record's structural field has the wrong JSON type (``""`` when none has)."""
    for key, kind in _SHAPES.items():
        if key in data and not isinstance(data[key], kind):
            expected = "object" if kind is dict else "array"
            return f"field {key!r} is {type(data[key]).__name__}, not a JSON {expected}"
    cases = data.get("cases") or []
    if any(not isinstance(c, dict) for c in cases):
        return "field 'cases' holds an entry that is not a JSON object"
    return ""


def load_records(results: Path) -> tuple[list[Record], list[tuple[Path, str]]]:
    """:func:`scan_records` as typed :class:`~bench.records.record.Record` objects (what readers use)."""
    raw, problems = scan_records(results)
    return [Record.from_dict(d) for d in raw], problems


def run_state(results: Path, run_id: str) -> str:
    """``done``, ``failed`` (a record that is not done) or ``to run`` (no readable record)."""
    record = load_record(record_path(results, run_id))
    if record is None:
        return "to run"
    return "done" if record.done else "failed"


def is_done(results: Path, run_id: str) -> bool:
    """True when the run's record exists with status ``done``."""
    return run_state(results, run_id) == "done"


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
    fh.write(json.dumps({**worker_info(), "since": time.time()}))
    fh.flush()
    return Claim(path, fh)
