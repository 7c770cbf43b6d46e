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
import types
import typing
from collections.abc import Mapping, Sequence
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
    """Lightning Trainer budget and placement (passed through to ``lightning.Trainer``)."""

    max_steps: int = 200
    max_epochs: int = -1
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
    """Optimiser and LR schedule (see ``models.SegmentationModule``)."""

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.99
    scheduler: str = "poly"
    warmup_steps: int = 0


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
    """Inference and metric settings."""

    sw_batch_size: int = 4
    sw_overlap: float = 0.25
    betti_patch: int | None = None
    nsd_tolerance: float = 1.0


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
        """SHA-256 of the normalised config without the sweep name (12 hex digits)."""
        d = self.to_dict()
        d.pop("sweep")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

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
    ("OptimConfig", "optimizer"): ("adamw", "adam", "sgd"),
    ("OptimConfig", "scheduler"): ("poly", "cosine", "none"),
    ("ParamSpace", "type"): ("float", "int", "categorical"),
    ("ObjectiveSpec", "direction"): ("maximize", "minimize"),
    ("TuneConfig", "sampler"): ("tpe", "random", "grid"),
    ("TuneConfig", "pruner"): ("median", "successive_halving", "hyperband", "none"),
}
_POSITIVE = {("TrainerConfig", "max_steps"), ("DataConfig", "batch_size"), ("OptimConfig", "lr")}


def _check_values(obj: Any, where: str) -> None:
    cls = type(obj).__name__
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{where}.{f.name}" if where else f.name
        choices = _CHOICES.get((cls, f.name))
        if choices and value not in choices:
            _fail(path, f"{value!r} is not one of {', '.join(choices)}")
        unlimited = f.name == "max_steps" and value == -1
        if (cls, f.name) in _POSITIVE and value is not None and value <= 0 and not unlimited:
            _fail(path, f"must be > 0, got {value!r}")
    if cls in ("ParamSpace", "TuneConfig"):
        _check_tune(obj, where)
    if cls == "SweepConfig":
        for key in ("datasets", "models", "losses", "seeds", "folds"):
            if not getattr(obj, key):
                _fail(key, "must list at least one entry")


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


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"trainer.max_steps=10"`` -> (["trainer", "max_steps"], 10); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def load_sweep(path: str | Path | None = None, overrides: Sequence[str] = ()) -> SweepConfig:
    """Read a sweep YAML (default: the packaged default sweep), apply overrides, validate.

    Raises:
        ConfigError: missing file, bad YAML, or a bad field (the message names file and field).
    """
    path = Path(path) if path is not None else DEFAULT_SWEEP
    if not path.is_file():
        raise ConfigError(f"{path}: no such sweep file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sweep fields")
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a mapping")
        node[keys[-1]] = value
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
