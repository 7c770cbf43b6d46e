"""The one typed config: sweep file (YAML) + CLI overrides -> validated ``SweepConfig`` -> ``RunConfig``s.

A sweep file lists datasets, models, losses, seeds and folds plus shared settings. Every entry of
``datasets``/``models``/``losses`` is a name or ``{name: ..., <kwargs>}``; kwargs go to the
DataModule constructor, the model builder or the loss factory. ``expand`` takes the cartesian
product into frozen ``RunConfig``s, each with a stable id (hash of its normalised form).

Validation happens once, while building: an unknown key, a wrong type or a bad value raises
:class:`ConfigError` naming the field (``trainer.max_steps: expected int, got 'ten'``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SWEEP = Path(__file__).with_name("default_sweep.yaml")


class ConfigError(ValueError):
    """A bad sweep file or override; the message names the file and field."""


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component by name plus the keyword arguments it is built with."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainerConfig:
    """Lightning Trainer budget and placement.

    Every field but ``checkpoint_every_n_steps`` is passed to ``lightning.Trainer`` under its own
    name. The budget is ``max_steps`` optimiser steps, or ``max_epochs`` epochs when
    ``max_steps: -1`` (one of them must be set). ``checkpoint_every_n_steps``: a checkpoint is
    written at every validation and at least every this many steps, for resume.
    """

    max_steps: int = 200
    max_epochs: int = -1
    checkpoint_every_n_steps: int = 50
    val_check_interval: int | None = None
    check_val_every_n_epoch: int = 1
    limit_val_batches: float = 1.0
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    gradient_clip_val: float | None = None
    deterministic: bool = False
    log_every_n_steps: int = 10


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and LR schedule (see ``models.SegmentationModule``).

    ``optimizer: sam`` is sharpness-aware minimisation (Foret et al. 2021) around the
    ``sam_base`` optimiser (``sgd``/``adamw``/``adam``) with radius ``sam_rho``.
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.99
    scheduler: str = "poly"
    warmup_steps: int = 0
    sam_rho: float = 0.05
    sam_base: str = "sgd"


@dataclass(frozen=True)
class DataConfig:
    """Loader settings shared by every dataset of the sweep (dataset kwargs override them)."""

    batch_size: int = 4
    patch_size: tuple[int, ...] | None = None
    samples_per_epoch: int = 64
    fg_oversample: float = 0.33
    augment: dict[str, float] = field(default_factory=lambda: {"flip": 0.5, "rot90": 0.5})
    num_workers: int = 0
    num_folds: int = 5
    split_seed: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """Inference and metric settings.

    ``save_predictions``: test cases (the first ones by case id) whose prediction, label and image
    are saved under ``<results>/predictions/<run_id>/`` for the leaderboard's qualitative panels
    (-1: every case); ``save_probabilities`` adds the class probabilities (seed ensembles,
    reliability diagrams).
    """

    sw_batch_size: int = 4
    sw_overlap: float = 0.25
    betti_patch: int | None = None
    nsd_tolerance: float = 1.0
    save_predictions: int = 2
    save_probabilities: bool = False


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment tracking: wandb (offline unless an API key is configured) and CSV logs."""

    wandb: bool = False
    project: str = "segbench"
    entity: str | None = None
    log_images: int = 2


@dataclass(frozen=True)
class ParamSpace:
    """Search space of one hyperparameter (an Optuna distribution).

    ``type``: ``float`` / ``int`` (``low``, ``high``, optional ``log`` or ``step``) or
    ``categorical`` (``choices``; lists or mappings are allowed and passed to Optuna as JSON).
    YAML reads ``1e-4`` as a string, so numeric strings in ``low``/``high``/``step`` are accepted.
    """

    type: str
    low: float | str | None = None
    high: float | str | None = None
    log: bool = False
    step: float | str | None = None
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        for name in ("low", "high", "step"):
            value = getattr(self, name)
            if isinstance(value, str):
                with contextlib.suppress(ValueError):  # else validation names the field
                    object.__setattr__(self, name, float(value))


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective: a ``val_*`` metric and its direction (``maximize``/``minimize``)."""

    metric: str = "val_dice"
    direction: str = "maximize"


@dataclass(frozen=True)
class TuneConfig:
    """Optuna study settings of ``segbench tune`` (see ``docs/sweeps.md``).

    ``space`` maps dotted ``RunConfig`` paths (``optim.lr``, ``data.batch_size``,
    ``model.kwargs.channels``, ``loss.weights.<term>``) to :class:`ParamSpace`.
    """

    space: dict[str, ParamSpace] = field(default_factory=dict)
    n_trials: int = 20
    objectives: tuple[ObjectiveSpec, ...] = (ObjectiveSpec(),)
    sampler: str = "tpe"
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    pruner: str = "median"
    pruner_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int | None = 0
    heartbeat_interval: int = 60
    grace_period: int | None = None
    max_retry: int = 1
    evaluate_best: bool = True


HASH_EXCLUDED: tuple[str, ...] = (
    "sweep",
    "dataset.kwargs.root",
    "dataset.kwargs.download",
    "dataset.kwargs.cache_dir",
    "data.num_workers",
    "trainer.log_every_n_steps",
    "trainer.checkpoint_every_n_steps",
    "eval.save_predictions",
    "eval.save_probabilities",
)
"""Dotted paths left out of ``config_hash``: they cannot change a recorded number (the sweep's
name, where the dataset lies on this machine and whether it may be downloaded - its files are
verified by checksum -, loader workers, logging cadence, checkpoint cadence, which predictions
are saved). The same run on two machines with the data in different folders has one id."""

ROW_EXCLUDED: tuple[str, ...] = ("seed", "fold", *HASH_EXCLUDED)
"""Also left out of a leaderboard row's identity: the runs of a row differ only in seed / fold."""


def _drop_paths(d: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    d = json.loads(json.dumps(d))
    for path in paths:
        node: Any = d
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return d


def hash_config(d: Mapping[str, Any]) -> str:
    """SHA-256 (12 hex digits) of a ``RunConfig.to_dict()`` without :data:`HASH_EXCLUDED`."""
    kept = _drop_paths(dict(d), HASH_EXCLUDED)
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def row_key(config: Mapping[str, Any]) -> str:
    """A leaderboard row's identity: the config without :data:`ROW_EXCLUDED` (canonical JSON)."""
    return json.dumps(_drop_paths(dict(config), ROW_EXCLUDED), sort_keys=True)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run; its hash is the run's identity."""

    dataset: ComponentSpec
    model: ComponentSpec
    loss: ComponentSpec
    seed: int = 0
    fold: int = 0
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sweep: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def config_hash(self) -> str:
        """SHA-256 of the normalised config without :data:`HASH_EXCLUDED` (12 hex digits)."""
        return hash_config(self.to_dict())

    @property
    def run_id(self) -> str:
        """Readable, stable id: ``<dataset>__<model>__<loss>__s<seed>f<fold>__<hash>``."""
        loss = self.loss.name.replace("*", "x")
        return f"{self.dataset.name}__{self.model.name}__{loss}__s{self.seed}f{self.fold}__{self.config_hash}"


@dataclass(frozen=True)
class SweepConfig:
    """A sweep file: lists to expand plus shared settings."""

    name: str = "default"
    datasets: tuple[ComponentSpec, ...] = (ComponentSpec("synthetic_vessels"),)
    models: tuple[ComponentSpec, ...] = (ComponentSpec("unet"),)
    losses: tuple[ComponentSpec, ...] = (ComponentSpec("dice_ce"),)
    seeds: tuple[int, ...] = (0,)
    folds: tuple[int, ...] = (0,)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def expand(self) -> list[RunConfig]:
        """All runs: datasets × models × losses × seeds × folds, in that nesting order."""
        return [
            RunConfig(d, m, lo, s, f, self.trainer, self.optim, self.data, self.eval, self.name)
            for d, m, lo, s, f in itertools.product(
                self.datasets, self.models, self.losses, self.seeds, self.folds
            )
        ]


# ---- building and validation -----------------------------------------------------------


def _fail(where: str, msg: str) -> typing.NoReturn:
    raise ConfigError(f"{where}: {msg}")


def _component(value: Any, where: str) -> ComponentSpec:
    if isinstance(value, str):
        return ComponentSpec(value)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        if set(value) == {"name", "kwargs"} and isinstance(value["kwargs"], Mapping):
            return ComponentSpec(value["name"], dict(value["kwargs"]))  # RunConfig.to_dict() form
        kwargs = {k: v for k, v in value.items() if k != "name"}
        return ComponentSpec(value["name"], dict(kwargs))
    _fail(where, f"expected a name or a mapping with 'name', got {value!r}")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists/tuples; raise naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(option, value, where)
            except ConfigError as e:
                errors.append(str(e).split(": ", 1)[-1])
        _fail(where, f"expected {_typename(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        _fail(where, f"expected null, got {value!r}")
    if tp is ComponentSpec:
        return _component(value, where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]  # a single value where a list is expected
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            _fail(where, f"expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    _fail(where, f"expected {_typename(tp)}, got {value!r}")


def _typename(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        _fail(where, f"expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(names)}"
            _fail(f"{where}.{key}" if where else str(key), f"unknown field{hint}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    obj = cls(**kwargs)
    _check_values(obj, where)
    return obj


_CHOICES = {
    ("OptimConfig", "optimizer"): ("adamw", "adam", "sgd", "sam"),
    ("OptimConfig", "sam_base"): ("adamw", "adam", "sgd"),
    ("OptimConfig", "scheduler"): ("poly", "cosine", "none"),
    ("TrainerConfig", "accelerator"): ("cpu", "gpu", "cuda", "mps", "auto"),
    ("TrainerConfig", "precision"): (
        "32-true",
        "32",
        "16-mixed",
        "bf16-mixed",
        "bf16-true",
        "16-true",
        "64-true",
        "64",
        "transformer-engine",
    ),
    ("ParamSpace", "type"): ("float", "int", "categorical"),
    ("ObjectiveSpec", "direction"): ("maximize", "minimize"),
    ("TuneConfig", "sampler"): ("tpe", "random", "grid"),
    ("TuneConfig", "pruner"): ("median", "successive_halving", "hyperband", "none"),
}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


# (class, field) -> (rule, what the rule says); None values (where allowed) are not checked.
_RANGES: dict[tuple[str, str], tuple[Callable[[Any], bool], str]] = {
    ("TrainerConfig", "max_steps"): (lambda v: v == -1 or v >= 1, "must be >= 1 (or -1 with max_epochs)"),
    ("TrainerConfig", "max_epochs"): (lambda v: v == -1 or v >= 1, "must be >= 1 (or -1 with max_steps)"),
    ("TrainerConfig", "checkpoint_every_n_steps"): (lambda v: v >= 1, "must be >= 1"),
    ("TrainerConfig", "val_check_interval"): (lambda v: v >= 1, "must be >= 1 (steps) or null"),
    ("TrainerConfig", "check_val_every_n_epoch"): (lambda v: v >= 1, "must be >= 1"),
    ("TrainerConfig", "limit_val_batches"): (lambda v: _finite(v) and v > 0, "must be > 0"),
    ("TrainerConfig", "num_nodes"): (lambda v: v >= 1, "must be >= 1"),
    ("TrainerConfig", "gradient_clip_val"): (lambda v: _finite(v) and v > 0, "must be finite and > 0"),
    ("TrainerConfig", "log_every_n_steps"): (lambda v: v >= 1, "must be >= 1"),
    ("OptimConfig", "lr"): (lambda v: _finite(v) and v > 0, "must be finite and > 0"),
    ("OptimConfig", "weight_decay"): (lambda v: _finite(v) and v >= 0, "must be finite and >= 0"),
    ("OptimConfig", "momentum"): (lambda v: _finite(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("OptimConfig", "warmup_steps"): (lambda v: v >= 0, "must be >= 0"),
    ("OptimConfig", "sam_rho"): (lambda v: _finite(v) and v > 0, "must be finite and > 0"),
    ("DataConfig", "batch_size"): (lambda v: v >= 1, "must be >= 1"),
    ("DataConfig", "patch_size"): (
        lambda v: len(v) in (2, 3) and all(x >= 1 for x in v),
        "must list 2 or 3 sizes, each >= 1",
    ),
    ("DataConfig", "samples_per_epoch"): (lambda v: v >= 1, "must be >= 1"),
    ("DataConfig", "fg_oversample"): (lambda v: _finite(v) and 0 <= v <= 1, "must be in [0, 1]"),
    ("DataConfig", "augment"): (
        lambda v: all(_finite(p) and 0 <= p <= 1 for p in v.values()),
        "probabilities must be in [0, 1]",
    ),
    ("DataConfig", "num_workers"): (lambda v: v >= 0, "must be >= 0"),
    ("DataConfig", "num_folds"): (lambda v: v >= 1, "must be >= 1"),
    ("DataConfig", "split_seed"): (lambda v: v >= 0, "must be >= 0"),
    ("EvalConfig", "sw_batch_size"): (lambda v: v >= 1, "must be >= 1"),
    ("EvalConfig", "sw_overlap"): (lambda v: _finite(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("EvalConfig", "betti_patch"): (lambda v: v >= 1, "must be >= 1 or null"),
    ("EvalConfig", "nsd_tolerance"): (lambda v: _finite(v) and v >= 0, "must be finite and >= 0"),
    ("EvalConfig", "save_predictions"): (lambda v: v >= -1, "must be >= 0, or -1 for every case"),
    ("RunConfig", "seed"): (lambda v: v >= 0, "must be >= 0"),
    ("RunConfig", "fold"): (lambda v: v >= 0, "must be >= 0"),
    ("TrackingConfig", "log_images"): (lambda v: v >= 0, "must be >= 0"),
}


def _check_values(obj: Any, where: str) -> None:
    cls = type(obj).__name__
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{where}.{f.name}" if where else f.name
        choices = _CHOICES.get((cls, f.name))
        if choices and value not in choices:
            _fail(path, f"{value!r} is not one of {', '.join(choices)}")
        rule = _RANGES.get((cls, f.name))
        if rule is not None and value is not None and not rule[0](value):
            _fail(path, f"{rule[1]}, got {value!r}")
    if cls == "TrainerConfig":
        if obj.max_steps == -1 and obj.max_epochs == -1:
            _fail(
                f"{where}.max_steps" if where else "max_steps",
                "-1 (no step limit) needs max_epochs >= 1; a run must have a budget",
            )
        if isinstance(obj.devices, int) and obj.devices < -1 or obj.devices == 0:
            _fail(f"{where}.devices", f"must be >= 1, -1, 'auto' or a list like '0,1', got {obj.devices!r}")
    if cls in ("ParamSpace", "TuneConfig"):
        _check_tune(obj, where)
    if cls == "SweepConfig":
        for key in ("datasets", "models", "losses", "seeds", "folds"):
            if not getattr(obj, key):
                _fail(key, "must list at least one entry")
        for i, seed in enumerate(obj.seeds):
            if seed < 0:
                _fail(f"seeds[{i}]", f"must be >= 0, got {seed}")
        for i, fold in enumerate(obj.folds):
            if not 0 <= fold < obj.data.num_folds:
                _fail(f"folds[{i}]", f"must be in [0, data.num_folds={obj.data.num_folds}), got {fold}")


_TUNE_ROOTS = ("dataset", "model", "loss", "seed", "fold", "trainer", "optim", "data", "eval")


def _check_tune(obj: Any, where: str) -> None:
    """Search spaces: bounds for numbers, choices for categoricals; paths start at a RunConfig field."""
    if isinstance(obj, ParamSpace):
        if obj.type == "categorical":
            if not obj.choices:
                _fail(f"{where}.choices", "a categorical space needs at least one choice")
            return
        for name in ("low", "high", "step"):
            value = getattr(obj, name)
            if value is not None and not isinstance(value, (int, float)):
                _fail(f"{where}.{name}", f"expected a number, got {value!r}")
        if obj.low is None or obj.high is None or obj.low > obj.high:
            _fail(where, f"a {obj.type} space needs low <= high, got low={obj.low!r} high={obj.high!r}")
        if obj.log and (obj.low <= 0 or obj.step is not None):
            _fail(where, "log=true needs low > 0 and no step")
        return
    for path in obj.space:
        if path.split(".")[0] not in _TUNE_ROOTS:
            _fail(f"{where}.space.{path}", f"the path must start with one of {', '.join(_TUNE_ROOTS)}")
    for name in ("n_trials", "heartbeat_interval"):
        if getattr(obj, name) <= 0:
            _fail(f"{where}.{name}", f"must be > 0, got {getattr(obj, name)}")
    if not obj.objectives:
        _fail(f"{where}.objectives", "must list at least one objective")
    if obj.sampler == "grid" and any(p.type != "categorical" for p in obj.space.values()):
        bad = [k for k, p in obj.space.items() if p.type != "categorical"]
        _fail(f"{where}.space", f"the grid sampler needs categorical spaces; not: {', '.join(bad)}")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``3e-4`` / ``1e30`` (no dot) as floats, as YAML 1.2 does."""


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text with segbench's loader (the sweep file and ``-o`` values alike)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"trainer.max_steps=10"`` -> (["trainer", "max_steps"], 10); the value is parsed as YAML,
    exactly like the sweep file (``optim.lr=3e-4`` is a number)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    keys = key.strip().split(".")
    if not all(k.strip() for k in keys):
        raise ConfigError(f"override {text!r}: empty key in {key!r}")
    try:
        return keys, parse_yaml(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({_yaml_problem(e)})") from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def read_sweep_file(path: Path) -> dict[str, Any]:
    """The top-level mapping of a sweep file; every way it can be unusable is a one-line error."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a sweep file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such sweep file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    if b"\0" in raw:
        raise ConfigError(f"{path}: a binary file, not a YAML sweep file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, not a YAML sweep file") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    if data is None:
        raise ConfigError(f"{path}: the sweep file is empty (segbench run --print-default shows a full one)")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError(f"{path}: the top level is {kind}; it must be a mapping of sweep fields")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Write each ``key.path=value`` into ``data`` (in place; returns it)."""
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a mapping")
        node[keys[-1]] = value
    return data


def load_sweep(path: str | Path | None = None, overrides: Sequence[str] = ()) -> SweepConfig:
    """Read a sweep YAML (default: the packaged default sweep), apply overrides, validate.

    Raises:
        ConfigError: missing, empty, binary or non-mapping file, bad YAML, a bad override, or a
            bad field (the message names file and field).
    """
    path = Path(path) if path is not None else DEFAULT_SWEEP
    data = apply_overrides(read_sweep_file(path), overrides)
    try:
        return _build(SweepConfig, data, "")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def sweep_from_dict(data: Mapping[str, Any]) -> SweepConfig:
    """Validate a sweep given as a dict (tests, Optuna trials)."""
    return _build(SweepConfig, dict(data), "")


def run_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Rebuild a ``RunConfig`` from ``RunConfig.to_dict()`` output (e.g. from a record)."""
    return _build(RunConfig, dict(data), "")
