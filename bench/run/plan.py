"""Planning a sweep: each run's config as it will be used, checked before anything trains.

:func:`resolve_run` fills the defaults that depend on the dataset or model, :func:`check_run`
validates a run against the registries, :func:`plan_sweep` does both for every run of a sweep
(so a typo costs seconds, not a failed run hours in), and :func:`run_state` says what a results
folder already holds for a run. Nothing here touches the disk but :func:`run_state`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bench.config import ComponentSpec, ConfigError, DataConfig, RunConfig, SweepConfig
from bench.config.load import FILES_DIGEST
from bench.records import run_state as _record_state
from bench.run.launch import device_count
from bench.run.validation import resolved_val_cases
from datamodules import dataset_class
from models import create_loss, create_scheme, model_entry
from models.registry import (
    SEGBENCH_MODEL_OPTIONS,
    check_kwargs,
    loss_dims,
    loss_targets,
    preset_kwargs,
    scheme_entry,
)

# DataModule arguments the runner sets from the run itself (not from ``data`` or dataset kwargs).
_RUN_DATA_ARGS = ("fold", "seed", "multi_rater", "train_labels")


def datamodule_kwargs(cfg: RunConfig) -> dict[str, Any]:
    """The DataModule's arguments: sweep-wide ``data`` settings overridden by the dataset entry's
    kwargs, plus the run's own (fold, seed, ``multi_rater`` for a loss on several raters and
    ``train_labels`` for a scheme registered to train on other labels, e.g. scribbles)."""
    d = cfg.data
    kwargs: dict[str, Any] = {
        f.name: getattr(d, f.name) for f in dataclasses.fields(DataConfig) if getattr(d, f.name) is not None
    }
    kwargs.update(cfg.dataset.kwargs)
    kwargs.pop(FILES_DIGEST, None)
    kwargs.update(fold=cfg.fold, seed=cfg.seed)
    if loss_targets(cfg.loss.name) == "raters":
        kwargs["multi_rater"] = True
    train_labels = scheme_entry(cfg.scheme.name).meta.get("train_labels", "dense")
    if train_labels != "dense":  # e.g. scribbles: what the scheme's registration says it trains on
        kwargs["train_labels"] = train_labels
    return kwargs


def resolve_run(cfg: RunConfig) -> RunConfig:
    """The config as it will actually be used: defaults that depend on the dataset or model filled in.

    - ``data.patch_size``: the dataset's ``default_patch_size`` when not given;
    - ``data.labelled_fraction``: a dataset entry's ``labelled_fraction`` moved here (one label
      budget is one value, wherever the sweep wrote it);
    - ``model.kwargs.img_size``: the patch size, for models registered with ``fixed_input_size``;
    - ``model.kwargs``: with a ``preset``, every option it sets (options given beside it win), so
      the record states the network as built, not only the preset's name;
    - ``trainer.strategy``: ``ddp`` for several devices or nodes with ``strategy: auto`` (the
      launch path segbench has; Lightning's own re-launch of the CLI would hang the sweep);
    - ``trainer.val_max_cases``: the validation cases used when not set (4 under the default step
      cadence, -1 = every case under an explicit epoch cadence; :mod:`bench.run.validation`).

    Raises:
        ConfigError: a ``patch_size`` whose length is not the dataset's number of dimensions.
    """
    cls = dataset_class(cfg.dataset.name, cfg.dataset.kwargs)
    dims = int(cls.spatial_dims)
    patch = cfg.dataset.kwargs.get("patch_size", cfg.data.patch_size)
    where = "datasets[].patch_size" if "patch_size" in cfg.dataset.kwargs else "data.patch_size"
    if patch is None:
        patch = tuple(cls.default_patch_size)
    patch = tuple(int(p) for p in patch)
    if len(patch) != dims:
        raise ConfigError(
            f"{where}: {list(patch)} has {len(patch)} entries but dataset {cfg.dataset.name!r} is {dims}D; "
            f"give the patch size per dataset ({{name: {cfg.dataset.name}, patch_size: [...]}})"
        )
    dataset_kwargs = {
        k: v for k, v in cfg.dataset.kwargs.items() if k not in ("patch_size", "labelled_fraction")
    }
    fraction = float(cfg.dataset.kwargs.get("labelled_fraction", cfg.data.labelled_fraction))
    model_kwargs = dict(cfg.model.kwargs)
    meta = model_entry(cfg.model.name).meta
    if meta.get("fixed_input_size") and "img_size" not in model_kwargs:
        model_kwargs["img_size"] = list(patch)
    if model_kwargs.get("preset") is not None:  # the record states every option the preset set
        preset = model_kwargs["preset"]
        try:
            model_kwargs = {"preset": preset, **preset_kwargs(cfg.model.name, preset), **model_kwargs}
        except ValueError as e:  # an unknown preset
            raise ConfigError(f"models: {e}") from None
    t = cfg.trainer
    multi = t.num_nodes > 1 or device_count(t.devices) > 1
    trainer = dataclasses.replace(t, strategy="ddp") if multi and t.strategy == "auto" else t
    trainer = dataclasses.replace(trainer, val_max_cases=resolved_val_cases(trainer))
    return dataclasses.replace(
        cfg,
        dataset=ComponentSpec(cfg.dataset.name, dataset_kwargs),
        model=ComponentSpec(cfg.model.name, model_kwargs),
        data=dataclasses.replace(cfg.data, patch_size=patch, labelled_fraction=fraction),
        trainer=trainer,
    )


def check_run(cfg: RunConfig) -> None:
    """Validate one run against the registries before anything is built.

    Checks names, that every model / loss / dataset keyword is accepted by that component, that
    the model and every loss term support the dataset's dimensions, and the DataModule's own
    argument rules. Raises ``ValueError`` (``KeyError`` for unknown names) naming the field.
    """
    cls = dataset_class(cfg.dataset.name, cfg.dataset.kwargs)
    dims = int(cls.spatial_dims)
    m = model_entry(cfg.model.name)
    two_half = cfg.model.kwargs.get("input_mode") == "2.5d"
    if two_half and (dims != 3 or 2 not in m.meta["dims"]):
        raise ConfigError(f"models: {cfg.model.name!r}: input_mode 2.5d needs a 2D model on a 3D dataset")
    if not two_half and dims not in m.meta["dims"]:
        raise ConfigError(
            f"models: {cfg.model.name!r} supports {'/'.join(f'{d}D' for d in m.meta['dims'])}, "
            f"but dataset {cfg.dataset.name!r} is {dims}D"
        )
    reserved = ("spatial_dims", "in_channels", "out_channels")
    for key in cfg.model.kwargs:
        if key in reserved:
            raise ConfigError(f"models: {cfg.model.name!r}: {key!r} is set by segbench from the dataset")
    options = [k for k in cfg.model.kwargs if k not in SEGBENCH_MODEL_OPTIONS]
    path = cfg.model.kwargs.get("pretrained_encoder")
    if path is not None and not Path(str(path)).is_file():
        raise ConfigError(f"models: {cfg.model.name!r}: pretrained_encoder {path}: no such file")
    try:
        check_kwargs("model", cfg.model.name, m.factory, options, reserved)
        preset_kwargs(cfg.model.name, cfg.model.kwargs.get("preset"))  # an unknown preset: one line
    except ValueError as e:
        raise ConfigError(f"models: {e}") from None
    if dims not in loss_dims(cfg.loss.name):
        raise ConfigError(f"losses: {cfg.loss.name!r} is not defined for {dims}D data ({cfg.dataset.name!r})")
    if loss_targets(cfg.loss.name) == "raters" and not getattr(cls, "annotators", None):
        raise ConfigError(f"losses: {cfg.loss.name!r} needs several annotators; {cfg.dataset.name!r} has one")
    try:
        create_loss(cfg.loss.name, **cfg.loss.kwargs)  # cheap; checks every term's options
    except TypeError as e:
        raise ConfigError(f"losses: {cfg.loss.name!r}: {e}") from None
    except ValueError as e:
        raise ConfigError(f"losses: {e}") from None
    _check_scheme(cfg)
    kwargs = datamodule_kwargs(cfg)
    try:
        check_kwargs("dataset", cfg.dataset.name, cls, [k for k in kwargs if k not in _RUN_DATA_ARGS])
        if hasattr(cls, "check_kwargs"):
            cls.check_kwargs(kwargs)
    except ValueError as e:
        raise ConfigError(f"datasets: {e}") from None


def _check_scheme(cfg: RunConfig) -> None:
    """The run's training scheme: a registered name, its options, the loss it trains with and the
    labels it needs (every problem a one-line :class:`ConfigError` naming ``schemes``)."""
    name = cfg.scheme.name
    try:
        meta = scheme_entry(name).meta
        create_scheme(name, **cfg.scheme.kwargs)  # cheap; checks every option
    except KeyError as e:
        raise ConfigError(f"schemes: {e.args[0] if e.args else e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"schemes: {name!r}: {str(e).splitlines()[0]}") from None
    need = meta.get("loss")
    if need is not None and cfg.loss.name != need:
        raise ConfigError(
            f"schemes: {name!r} trains with the loss {need!r} (its labels are partial); the run's loss is "
            f"{cfg.loss.name!r}: list losses: [{need}] for it"
        )
    if meta.get("needs_unlabelled") and cfg.data.labelled_fraction >= 1.0:
        raise ConfigError(
            f"schemes: {name!r} learns from unlabelled cases, and this run labels every training case; "
            "set labelled_fraction below 1 (data.labelled_fraction or the dataset entry's)"
        )


def plan_sweep(sweep: SweepConfig) -> list[RunConfig]:
    """Every run of ``sweep``, each checked by :func:`resolve_run` and :func:`check_run`.

    Raises:
        ConfigError: the first bad run, naming the field and the run.
    """
    runs = sweep.expand()
    checked: set[str] = set()
    for cfg in runs:
        key = json.dumps(
            [
                cfg.dataset.name,
                cfg.dataset.kwargs,
                cfg.model.name,
                cfg.model.kwargs,
                cfg.loss.name,
                cfg.loss.kwargs,
                cfg.scheme.name,
                cfg.scheme.kwargs,
                cfg.data.labelled_fraction,
            ],
            sort_keys=True,
            default=str,
        )
        if key in checked:
            continue  # seeds and folds share the components
        checked.add(key)
        try:
            check_run(resolve_run(cfg))
        except KeyError as e:
            raise ConfigError(str(e.args[0]) if e.args else str(e)) from None
    return runs


def run_state(results: Path, cfg: RunConfig) -> str:
    """``done``, ``failed`` or ``to run`` for one run (what ``--dry-run`` prints)."""
    return _record_state(results, cfg.run_id)
