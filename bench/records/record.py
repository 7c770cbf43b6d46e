"""The record type: one constructor per kind (train, evaluation, ensemble), typed fields for readers.

Every producer builds its record with :meth:`Record.train`, :meth:`Record.evaluation` or
:meth:`Record.ensemble`, sets the fields of what happened as it happens, and writes
``record.to_dict()``; every reader turns the stored JSON into a :class:`Record` with
:meth:`Record.from_dict` (:func:`bench.records.load_records` does it for a results folder) and
reads its typed fields. The layout is described in ``docs/records.md``.

A field is written only when it was set: a record never states what did not happen. The keys
are written in the order they were set (the constructors set the head of a record in the
documented order), so a record read from disk is written back key for key, in its own order:
``Record.from_dict(d).to_dict() == d``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

RECORD_SCHEMA = 3
RECORD_KINDS = ("train", "evaluation", "ensemble")
MODELS = "models"
"""Kept weights: ``<results>/models/<run_id>/`` holds :data:`WEIGHTS_FILE` and :data:`MODEL_CONFIG`
(``eval.keep_model: final``); the record's ``weights`` names the file and its sha256."""
WEIGHTS_FILE = "model.safetensors"
MODEL_CONFIG = "config.json"
_SLURM_ENV = {
    "slurm_job_id": "SLURM_JOB_ID",
    "slurm_array_job_id": "SLURM_ARRAY_JOB_ID",
    "slurm_array_task_id": "SLURM_ARRAY_TASK_ID",
    "slurm_node": "SLURMD_NODENAME",
}


def now() -> str:
    """The current UTC time in ISO 8601 (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def worker_info() -> dict[str, Any]:
    """Who executes: pid, host and, inside a SLURM job, its job / array ids and node."""
    info: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
    for key, env in _SLURM_ENV.items():
        if os.environ.get(env):
            info[key] = os.environ[env]
    return info


@dataclass(kw_only=True, eq=False)
class Record:
    """One run record (docs/records.md): every documented field is typed; keys that no segbench
    version documents (for example ``study`` / ``trial`` / ``storage`` / ``val`` of a tuned run's
    test record) live in ``extra`` and are written as top-level keys.

    Attributes (by kind; unset fields keep their empty default and are not written):
        kind, run_id, schema, config, config_hash, status: every record. ``status`` is
            ``running`` until a train run is ``done`` or ``failed``.
        method, baseline: evaluation / ensemble rows (``baseline: "human"`` for a second annotator).
        attempt, resumed_from_step, params, steps, epochs, schedule_steps, lr_trace, val_trace,
            train_seconds, infer_seconds, world_size, memory, tracking_error: train runs.
        test_seconds, device, split, cases, aggregates, predictions: every kind that scored cases.
        weights: a done train run's kept network, ``{file, sha256, bytes}`` (``file`` relative
            to the results folder; ``eval.keep_model: final``); unset in older records.
        problems: evaluation (mismatched files); members, seeds: ensemble.
        degenerate: ``{kind, cases}`` when more than half of the test predictions are constant
            (``all-background``, ``all-foreground`` or ``constant``): which cases; unset otherwise.
        error, traceback: a failed run. started_at, finished_at: ISO 8601 UTC.
        worker, git, versions: provenance, set by the constructors.
    """

    kind: str
    run_id: str
    schema: int = RECORD_SCHEMA
    config: dict[str, Any] = field(default_factory=dict)
    config_hash: str | None = None
    status: str = "running"
    method: str | None = None
    baseline: str | None = None
    attempt: int | None = None
    device: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    worker: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    params: int | None = None
    resumed_from_step: int | None = None
    train_seconds: float | None = None
    steps: int | None = None
    epochs: int | None = None
    lr_trace: list[list[float]] = field(default_factory=list)
    val_trace: list[list[float]] = field(default_factory=list)  # [step, val_dice, val_loss] per validation
    schedule_steps: int | None = None
    test_seconds: float | None = None
    infer_seconds: float | None = None
    world_size: int | None = None
    split: dict[str, Any] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    aggregates: dict[str, Any] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)
    predictions: dict[str, str] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    seeds: list[Any] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    degenerate: dict[str, Any] = field(default_factory=dict)
    tracking_error: str | None = None
    error: str | None = None
    traceback: str | None = None
    finished_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        written = dict.fromkeys(("schema", "kind", "run_id", "status"))
        for f in fields(self):
            if f.name in _FIELDS and getattr(self, f.name) != _default(f):
                written[f.name] = None
        object.__setattr__(self, "_written", written)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        written = self.__dict__.get("_written")
        if written is not None and name in _FIELDS:
            written.setdefault(name, None)  # an ordered set: the first assignment places the key

    # ---- constructors: one per kind ------------------------------------------------------

    @classmethod
    def _new(cls, kind: str, run_id: str, head: dict[str, Any], fields_: dict[str, Any]) -> Record:
        from bench.records.provenance import git_state, package_versions

        given = {**head, **fields_}
        known = {k: v for k, v in given.items() if k in _FIELDS}
        extra = {k: v for k, v in given.items() if k not in _FIELDS}
        known.setdefault("started_at", now())
        rec = cls(
            kind=kind,
            run_id=run_id,
            worker=worker_info(),
            git=git_state(),
            versions=package_versions(),
            extra=extra,
            **known,
        )
        tail = ("started_at", "worker", "git", "versions")
        object.__setattr__(rec, "_written", dict.fromkeys(("schema", "kind", "run_id", *given, *tail)))
        return rec

    @classmethod
    def train(
        cls, run_id: str, *, config: dict[str, Any], config_hash: str, status: str = "running", **fields_: Any
    ) -> Record:
        """A run of the runner, started now (``running`` until it is ``done`` or ``failed``).

        ``fields_``: further fields in the order they are written (``attempt``, ``device``, ...);
        names that are not fields of :class:`Record` go to ``extra``.
        """
        head = {"config_hash": config_hash, "config": config, "status": status}
        return cls._new("train", run_id, head, fields_)

    @classmethod
    def evaluation(
        cls,
        run_id: str,
        *,
        config: dict[str, Any],
        config_hash: str,
        method: str,
        status: str = "done",
        **fields_: Any,
    ) -> Record:
        """Predictions made elsewhere (or a second annotator) scored by ``segbench evaluate``;
        built once its cases are scored (``done``)."""
        head = {"config_hash": config_hash, "status": status, "config": config, "method": method}
        return cls._new("evaluation", run_id, head, fields_)

    @classmethod
    def ensemble(
        cls,
        run_id: str,
        *,
        config: dict[str, Any],
        config_hash: str,
        method: str,
        status: str = "done",
        **fields_: Any,
    ) -> Record:
        """The mean probabilities of a row's seeds, scored as a row by ``segbench ensemble``;
        built once its cases are scored (``done``)."""
        head = {"config_hash": config_hash, "status": status, "config": config, "method": method}
        return cls._new("ensemble", run_id, head, fields_)

    # ---- JSON ------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """The record of a stored JSON object (any schema segbench wrote).

        A missing ``kind`` reads as ``train`` (schema 1), a missing ``status`` as ``unknown``;
        neither is written back by :meth:`to_dict`.
        """
        rec = cls(kind=str(data.get("kind", "train")), run_id=str(data.get("run_id", "")))
        if "status" not in data:
            object.__setattr__(rec, "status", "unknown")
        for key, value in data.items():
            if key in _FIELDS:
                copied = (
                    dict(value)
                    if isinstance(value, dict)
                    else list(value)
                    if isinstance(value, list)
                    else value
                )
                object.__setattr__(rec, key, copied)
            else:
                rec.extra[key] = value
        object.__setattr__(rec, "_written", dict.fromkeys(data))
        return rec

    def to_dict(self) -> dict[str, Any]:
        """The JSON object to write: the fields that were set, in the order they were set, then
        fields filled in place (``record.cases.append``) and ``extra`` keys not placed yet."""
        out: dict[str, Any] = {}
        for name in self._written:  # type: ignore[attr-defined]
            if name in _FIELDS:
                out[name] = getattr(self, name)
            elif name in self.extra:
                out[name] = self.extra[name]
        for name in _FIELDS:
            value = getattr(self, name)
            if name not in out and isinstance(value, (dict, list)) and value:
                out[name] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    # ---- a read-only mapping view, for callers that still index records by key -------------

    def __getitem__(self, key: str) -> Any:
        """``record["status"]``: the value :meth:`to_dict` writes under ``key`` (new code reads
        the typed field ``record.status``)."""
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        """``record.get("error")``: like :meth:`__getitem__`, ``default`` for a key not written."""
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def __eq__(self, other: object) -> bool:
        """Two records are equal when they write the same JSON object."""
        return isinstance(other, Record) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment] - mutable

    # ---- what readers ask ----------------------------------------------------------------

    @property
    def torch_threads(self) -> int | None:
        """The intra-op threads torch computed with. Schema 3 states it as ``device.torch_threads``;
        schema-2 records stored that number under ``device.cpu_count`` (it was never the machine's
        core count), so it is read from there."""
        key = "torch_threads" if self.schema >= 3 else "cpu_count"
        value = self.device.get(key)
        return int(value) if isinstance(value, int) else None

    @property
    def side_by_side(self) -> int | None:
        """How many runner processes ``segbench run --side-by-side`` started together with this
        run's (``device.side_by_side``; 1: it ran alone of segbench's processes; None: a record
        written before segbench kept the count)."""
        value = self.device.get("side_by_side")
        return int(value) if isinstance(value, int) else None

    @property
    def gpu(self) -> str | None:
        """The GPU the run trained on: ``device.gpu`` (its name), else the accelerator's name for a
        run on one; None for a run on the CPU."""
        accelerator = self.device.get("accelerator") or "cpu"
        return None if accelerator == "cpu" else str(self.device.get("gpu") or accelerator)

    @property
    def machine_cores(self) -> int | None:
        """The cores the run's process could use (schema 3; unknown for older records)."""
        value = self.device.get("cpu_count") if self.schema >= 3 else None
        return int(value) if isinstance(value, int) else None

    @property
    def done(self) -> bool:
        """Whether the run finished (status ``done``)."""
        return self.status == "done"

    @property
    def seed(self) -> Any:
        """The config's seed (None for an evaluation)."""
        return self.config.get("seed")

    @property
    def fold(self) -> Any:
        """The config's fold (None for an evaluation)."""
        return self.config.get("fold")

    @property
    def dataset(self) -> dict[str, Any]:
        """``{name, kwargs}`` of the dataset (a copy)."""
        return dict(self.config.get("dataset") or {})

    @property
    def eval_settings(self) -> dict[str, Any]:
        """The config's ``eval`` settings (a copy; empty when absent)."""
        return dict(self.config.get("eval") or {})

    @property
    def model_name(self) -> str:
        """The registered model name, ``?`` when the config names none (an evaluation)."""
        return str((self.config.get("model") or {}).get("name", "?"))

    @property
    def loss_name(self) -> str:
        """The registered loss name, ``?`` when the config names none (an evaluation)."""
        return str((self.config.get("loss") or {}).get("name", "?"))

    @property
    def commit(self) -> str:
        """The git commit the record was written from, ``no-git`` outside a checkout."""
        return str(self.git.get("commit") or "no-git")

    @property
    def dirty(self) -> bool:
        """Whether the source tree had uncommitted changes."""
        return bool(self.git.get("dirty"))

    def case_values(self, metric: str) -> dict[str, Any]:
        """``case_id -> value`` of one metric (missing values absent)."""
        return {str(c.get("case_id")): c[metric] for c in self.cases if metric in c}


DEGENERATE_KINDS = ("all-background", "all-foreground", "constant")
"""What a constant prediction predicts: label 0 everywhere, label 1 everywhere of a binary task, or
one class everywhere (any other constant)."""


def constant_kind(labels: Any, num_classes: int, fov: Any = None) -> str | None:
    """The kind (:data:`DEGENERATE_KINDS`) of a constant prediction, None when it is not constant.

    Args:
        labels: ``(*spatial)`` integer label map (the argmax of the probabilities).
        num_classes: C, background included (2 for a binary task).
        fov: ``(*spatial)`` bool field of view; only its voxels count. None: every voxel.
    """
    values = labels[fov] if fov is not None else labels
    if values.size == 0:
        return None
    lo, hi = int(values.min()), int(values.max())
    if lo != hi:
        return None
    if lo == 0:
        return "all-background"
    return "all-foreground" if num_classes == 2 and lo == 1 else "constant"


def degenerate_state(kinds: Mapping[str, str | None]) -> dict[str, Any]:
    """The ``degenerate`` field of a record whose cases predicted ``kinds`` (``case_id -> kind``
    of :func:`constant_kind`, None when not constant): ``{kind, cases}`` when more than half of the
    cases are constant (``kind`` the most common one, ties in :data:`DEGENERATE_KINDS` order;
    ``cases`` sorted), else ``{}`` (nothing is written)."""
    constant = {cid: k for cid, k in kinds.items() if k is not None}
    if 2 * len(constant) <= len(kinds):
        return {}
    counts = {k: sum(1 for v in constant.values() if v == k) for k in DEGENERATE_KINDS}
    kind = max(DEGENERATE_KINDS, key=lambda k: (counts[k], -DEGENERATE_KINDS.index(k)))
    return {"kind": kind, "cases": sorted(constant)}


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


_FIELDS: frozenset[str] = frozenset(f.name for f in fields(Record) if f.name != "extra")
