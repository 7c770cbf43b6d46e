"""Sweep file (YAML) + CLI overrides -> validated :class:`~bench.config.schema.SweepConfig`.

Validation happens once, while building: an unknown key, a wrong type or a bad value raises
:class:`ConfigError` naming the field (``trainer.max_steps: expected int, got 'ten'``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.config.schema import (
    DEFAULT_SWEEP,
    ComponentSpec,
    ConfigError,
    ParamSpace,
    RunConfig,
    SweepConfig,
)

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
    ("EvalConfig", "keep_model"): ("final", "none"),
    ("EvalConfig", "tta"): ("none", "flip"),
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
    ("TrainerConfig", "check_val_every_n_epoch"): (lambda v: v >= 1, "must be >= 1 or null"),
    ("TrainerConfig", "val_every_n_steps"): (lambda v: v >= 1, "must be >= 1"),
    ("TrainerConfig", "val_max_cases"): (lambda v: v == -1 or v >= 1, "must be >= 1, -1 (all) or null"),
    ("TrainerConfig", "torch_threads"): (lambda v: v >= 1, "must be >= 1 or null"),
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
    ("DataConfig", "labelled_fraction"): (lambda v: _finite(v) and 0 < v <= 1, "must be in (0, 1]"),
    ("EvalConfig", "sw_batch_size"): (lambda v: v >= 1, "must be >= 1"),
    ("EvalConfig", "sw_overlap"): (lambda v: _finite(v) and 0 <= v < 1, "must be in [0, 1)"),
    ("EvalConfig", "betti_patch"): (lambda v: v >= 1, "must be >= 1 or null"),
    ("EvalConfig", "nsd_tolerance"): (lambda v: _finite(v) and v >= 0, "must be finite and >= 0"),
    ("EvalConfig", "save_predictions"): (lambda v: v >= -1, "must be >= 0, or -1 for every case"),
    ("EvalConfig", "postprocess"): (
        lambda v: (
            v in ("none", "largest_component")
            or (v.startswith("min_size:") and v[9:].isdigit() and int(v[9:]) >= 1)
        ),
        "must be none, largest_component or min_size:N with N >= 1",
    ),
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
    if cls == "EvalConfig" and obj.external and obj.keep_model != "final":
        _fail(
            f"{where}.external" if where else "external",
            f"needs {where + '.' if where else ''}keep_model: final (the kept model predicts the external "
            f"test sets), got keep_model: {obj.keep_model}",
        )
    if cls in ("ParamSpace", "TuneConfig"):
        _check_tune(obj, where)
    if cls == "SweepConfig":
        for key in ("datasets", "models", "losses", "schemes", "seeds", "folds"):
            if not getattr(obj, key):
                _fail(key, "must list at least one entry")
        for i, seed in enumerate(obj.seeds):
            if seed < 0:
                _fail(f"seeds[{i}]", f"must be >= 0, got {seed}")
        for i, fold in enumerate(obj.folds):
            if not 0 <= fold < obj.data.num_folds:
                _fail(f"folds[{i}]", f"must be in [0, data.num_folds={obj.data.num_folds}), got {fold}")
        check_external(obj.datasets, obj.eval.external)


def _declared(spec: ComponentSpec, where: str) -> Any:
    """The DataModule class that declares ``spec``'s channels, dimensions and classes (no data read)."""
    from datamodules.registry import DATASETS, dataset_class

    try:
        return dataset_class(spec.name, spec.kwargs)
    except KeyError:
        _fail(where, f"unknown dataset {spec.name!r}; known: {', '.join(DATASETS.names())}")
    except ValueError as e:
        _fail(where, str(e).splitlines()[0])


def check_external(datasets: Sequence[ComponentSpec], external: Sequence[ComponentSpec]) -> None:
    """Each ``eval.external`` entry against each dataset of the sweep, from the DataModule classes'
    declarations: the same ``in_channels``, ``spatial_dims`` and ``num_classes`` (the model's input
    and output); an entry naming the trained dataset itself is skipped for it. Equal class counts
    with other class names are allowed (labels are compared by index) and reported as a warning.

    Raises:
        ConfigError: one line naming the entry, e.g. ``eval.external[1] (stare): 3 channels, the
            sweep's dataset hrf has 1``.
    """
    import warnings

    for j, ext in enumerate(external):
        where = f"eval.external[{j}] ({ext.name})"
        theirs = _declared(ext, f"eval.external[{j}]")
        for i, spec in enumerate(datasets):
            if spec.name == ext.name:
                continue
            ours = _declared(spec, f"datasets[{i}]")
            checks = (
                ("spatial_dims", lambda n: f"{n}D", lambda n: f"is {n}D"),
                ("in_channels", lambda n: f"{n} channel{'s' * (n != 1)}", lambda n: f"has {n}"),
                ("num_classes", lambda n: f"{n} classes", lambda n: f"has {n}"),
            )
            for attr, said, has in checks:
                a, b = int(getattr(theirs, attr)), int(getattr(ours, attr))
                if a != b:
                    _fail(where, f"{said(a)}, the sweep's dataset {spec.name} {has(b)}")
            names = tuple(getattr(theirs, "class_names", ())), tuple(getattr(ours, "class_names", ()))
            if names[0] != names[1]:
                warnings.warn(
                    f"{where}: class names {list(names[0])} differ from {spec.name}'s {list(names[1])}; "
                    "labels are compared by index",
                    stacklevel=2,
                )


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


MAX_YAML_VALUES = 100_000
"""Most values a sweep file may expand to once its aliases are followed (a real one has hundreds;
a "billion laughs" file of a few lines has billions)."""
MAX_SWEEP_BYTES = 1 << 20
"""Largest sweep file read (1 MiB; a real one is a few KB)."""


def _check_expansion(root: yaml.Node) -> None:
    """Count the values of the node graph as the aliases expand it, without expanding it.

    Raises:
        yaml.YAMLError: an alias that refers to a node containing it, or more than
            :data:`MAX_YAML_VALUES` values.
    """
    size: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        if isinstance(node, yaml.MappingNode):
            children = [x for pair in node.value for x in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if closing:
            open_.discard(id(node))
            size[id(node)] = 1 + sum(size[id(c)] for c in children)
            if size[id(node)] > MAX_YAML_VALUES:
                raise yaml.YAMLError(
                    f"its aliases expand to more than {MAX_YAML_VALUES:,} values (an alias bomb?)"
                )
            continue
        if id(node) in size:
            continue
        if id(node) in open_:
            raise yaml.YAMLError("an alias refers to a node that contains it (a recursive structure)")
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``3e-4`` / ``1e30`` (no dot) as floats, as YAML 1.2 does,
    and refuses documents whose aliases expand too far or refer to themselves (:func:`_check_expansion`)."""

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text with segbench's loader (the sweep file and ``-o`` values alike).

    Raises:
        yaml.YAMLError: bad YAML, a tag that is not plain data (``!!python/...``), an alias bomb,
            a recursive alias or nesting too deep for the parser.
    """
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


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
        size = path.stat().st_size
        if size > MAX_SWEEP_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes; a sweep file is a few KB (limit {MAX_SWEEP_BYTES:,})")
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


FILES_DIGEST = "files_digest"
"""``dataset.kwargs.files_digest``: the content of a dataset read through a generic reader
(``content_digest`` of ``nnunet_raw`` / ``image_folder``: its files' names and sizes), part of
every run id since the folder is not; the runner checks it before a run starts and never passes it
to the DataModule."""


def pin_dataset_files(sweep: SweepConfig) -> SweepConfig:
    """``sweep`` with ``files_digest`` added to each dataset entry whose DataModule declares itself
    from the files under its ``root`` (a given digest is kept, and checked when a run starts).
    Entries that cannot be read are left as they are: planning names what is wrong with them."""
    from datamodules.registry import DATASETS

    entries = []
    for spec in sweep.datasets:
        root = spec.kwargs.get("root")
        try:
            digest = getattr(DATASETS.get(spec.name).factory, "content_digest", None)
        except KeyError:
            digest = None
        if (
            callable(digest)
            and root is not None
            and FILES_DIGEST not in spec.kwargs
            and Path(str(root)).is_dir()
        ):
            spec = ComponentSpec(spec.name, {**spec.kwargs, FILES_DIGEST: digest(root)})
        entries.append(spec)
    return dataclasses.replace(sweep, datasets=tuple(entries))


RECIPES = Path(__file__).parents[1] / "recipes"
"""Training recipes (``recipe: <name>`` in a sweep): ``bench/recipes/<name>.yaml``, sweep fields that
the sweep's own fields override (docs/sweeps.md)."""


def recipes() -> list[str]:
    """The names of the shipped recipes."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def _merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` written over it: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def apply_recipe(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with its ``recipe`` (if any) expanded: the recipe's fields under the sweep's own, so
    the sweep (and every ``-o`` override) wins. The runs state the resulting settings, not the
    recipe's name.

    Raises:
        ConfigError: an unknown recipe (one line listing the shipped ones).
    """
    data = dict(data)
    name = data.pop("recipe", None)
    if name is None:
        return data
    path = RECIPES / f"{name}.yaml"
    if not isinstance(name, str) or not path.is_file():
        raise ConfigError(f"recipe: {name!r} is not a recipe; recipes: {', '.join(recipes())}")
    return _merged(read_sweep_file(path), data)


def load_sweep(path: str | Path | None = None, overrides: Sequence[str] = ()) -> SweepConfig:
    """Read a sweep YAML (default: the packaged default sweep), apply overrides, validate.

    Raises:
        ConfigError: missing, empty, binary or non-mapping file, bad YAML, a bad override, or a
            bad field (the message names file and field).
    """
    path = Path(path) if path is not None else DEFAULT_SWEEP
    data = apply_overrides(read_sweep_file(path), overrides)
    try:
        return pin_dataset_files(_build(SweepConfig, apply_recipe(data), ""))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def sweep_from_dict(data: Mapping[str, Any]) -> SweepConfig:
    """Validate a sweep given as a dict (tests, Optuna trials); ``recipe`` is expanded as in a file."""
    return pin_dataset_files(_build(SweepConfig, apply_recipe(data), ""))


def run_from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Rebuild a ``RunConfig`` from ``RunConfig.to_dict()`` output (e.g. from a record)."""
    return _build(RunConfig, dict(data), "")
