"""The typed config tree: ``SweepConfig`` (a sweep file) expands into frozen ``RunConfig``s.

A sweep file lists datasets, models, losses, training schemes, seeds and folds plus shared settings.
Every entry of ``datasets``/``models``/``losses``/``schemes`` is a name or ``{name: ..., <kwargs>}``;
kwargs go to the DataModule constructor, the model builder, the loss factory or the scheme.
``expand`` takes the cartesian product into frozen ``RunConfig``s, each with a stable id (the hash
of its normalised form, :func:`bench.records.identity.hash_config`). Building and validation live
in :mod:`bench.config.load`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.metrics.settings import MetricSettings
from bench.records.identity import hash_config

_METRIC_DEFAULTS = MetricSettings()

DEFAULT_SWEEP = Path(__file__).parents[1] / "default_sweep.yaml"


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

    Every field but segbench's own (``checkpoint_every_n_steps``, ``val_every_n_steps``,
    ``val_max_cases``, ``torch_threads``) is passed to ``lightning.Trainer`` under its own name.
    The budget is ``max_steps`` optimiser steps, or ``max_epochs`` epochs when ``max_steps: -1``
    (one of them must be set). ``checkpoint_every_n_steps``: a checkpoint is written at every
    validation and at least every this many steps, for resume.

    Validation (``val_dice`` / ``val_loss``: logged, read by ``segbench tune``, never used to select
    anything) runs, by default, every ``val_every_n_steps`` optimiser steps and after the last one,
    on the first ``val_max_cases`` validation cases by case id (unset: 4; ``-1``: every case). A
    sweep that sets ``check_val_every_n_epoch`` or ``val_check_interval`` gets Lightning's cadence
    instead, on every validation case unless it sets ``val_max_cases`` too (see ``docs/sweeps.md``).
    ``torch_threads``: torch's intra-op threads (unset: ``$SEGBENCH_THREADS``, else the cores this
    process may use divided among the processes of the run, :mod:`bench.run.threads`).
    """

    max_steps: int = 200
    max_epochs: int = -1
    checkpoint_every_n_steps: int = 50
    val_check_interval: int | None = None
    check_val_every_n_epoch: int | None = None
    val_every_n_steps: int = 100
    val_max_cases: int | None = None
    torch_threads: int | None = None
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
    """Loader settings shared by every dataset of the sweep (dataset kwargs override them).

    ``labelled_fraction`` (in ``(0, 1]``): the share of the training cases whose labels training may
    use, a subset drawn per run seed by the DataModule (``split_info``'s ``labelled`` /
    ``unlabelled``); the other training cases are read without their labels and reach a training
    scheme as ``image_u`` (``docs/schemes.md``). Validation and test are untouched. A dataset entry
    may set it (``{name: chase_db1, labelled_fraction: 0.1}``), which makes label budgets a sweep
    axis; :func:`bench.run.plan.resolve_run` moves it here, so one budget is one value wherever it
    was written.
    """

    batch_size: int = 4
    patch_size: tuple[int, ...] | None = None
    samples_per_epoch: int = 64
    fg_oversample: float = 0.33
    augment: dict[str, float] = field(default_factory=lambda: {"flip": 0.5, "rot90": 0.5})
    num_workers: int = 0
    num_folds: int = 5
    split_seed: int = 0
    labelled_fraction: float = 1.0


@dataclass(frozen=True)
class EvalConfig:
    """Inference and metric settings (the metric defaults are :class:`~bench.metrics.MetricSettings`').

    ``save_predictions``: test cases (the first ones by case id) whose prediction, label and image
    are saved under ``<results>/predictions/<run_id>/`` for the leaderboard's qualitative panels
    (-1: every case); ``save_probabilities`` adds the class probabilities (seed ensembles,
    reliability diagrams). ``keep_model``: ``final`` keeps the trained network's final weights as
    ``<results>/models/<run_id>/model.safetensors`` with its ``config.json`` (``docs/predict.md``);
    ``none`` keeps nothing once the run is done.

    ``external``: other datasets (entries in the form of the sweep's ``datasets``: a name or
    ``{name: ..., <DataModule kwargs>}``) whose ``test`` split every trained run is also tested on
    after its own test, by its kept model, exactly as ``segbench evaluate --run RUN --dataset B``
    does (:func:`bench.evaluate.outside.evaluate_externals`; one ``evaluation`` record per run and
    entry). An entry inherits the trained dataset's ``scale`` and ``split_seed`` unless it sets
    its own; an entry naming the run's own dataset is skipped (its test split is the run's record).
    Its channels, dimensions and number of classes must be the trained dataset's (checked when the
    sweep is loaded); it needs ``keep_model: final``. It is left out of the run id: it cannot change
    a number of the run's own record (:data:`bench.records.identity.HASH_EXCLUDED`); see
    ``docs/external.md``.

    ``tta``: ``none`` or ``flip`` (mirror test-time augmentation over every combination of
    spatial axes, averaged softmax probabilities, as nnU-Net). ``postprocess``: ``none``,
    ``largest_component`` or ``min_size:N`` (per foreground class: keep the largest connected
    component / remove components under ``N`` voxels; full connectivity). Both apply to the test
    predictions only (:mod:`models.inference`) and are part of the run id; at their default
    (``none``) they are left out of the hashed config, so older ids stay the same
    (:data:`bench.records.identity.HASH_DEFAULTS`).
    """

    sw_batch_size: int = 4
    sw_overlap: float = 0.25
    betti_patch: int | None = _METRIC_DEFAULTS.betti_patch  # type: ignore[assignment]
    nsd_tolerance: float = _METRIC_DEFAULTS.nsd_tolerance
    save_predictions: int = 2
    save_probabilities: bool = False
    keep_model: str = "final"
    tta: str = "none"
    postprocess: str = "none"
    external: tuple[ComponentSpec, ...] = ()

    def metric_settings(self) -> MetricSettings:
        """The metric settings of this section (``betti_patch``, ``nsd_tolerance``) as one object."""
        return MetricSettings.from_mapping(dataclasses.asdict(self))


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
    """Everything that defines one run; its hash is the run's identity.

    ``scheme``: the training scheme (``models.schemes``: ``supervised``, ``mean_teacher``, ``ds6``,
    ``pseudo_label``, ``scribble``) and its options; at ``supervised`` without options it is left
    out of the hash (:data:`bench.records.identity.HASH_DEFAULTS`), so earlier run ids stay.
    """

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
    scheme: ComponentSpec = field(default_factory=lambda: ComponentSpec("supervised"))

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
    schemes: tuple[ComponentSpec, ...] = (ComponentSpec("supervised"),)
    seeds: tuple[int, ...] = (0,)
    folds: tuple[int, ...] = (0,)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def expand(self) -> list[RunConfig]:
        """All runs: datasets × models × losses × schemes × seeds × folds, in that nesting order."""
        return [
            RunConfig(d, m, lo, s, f, self.trainer, self.optim, self.data, self.eval, self.name, scheme=sc)
            for d, m, lo, sc, s, f in itertools.product(
                self.datasets, self.models, self.losses, self.schemes, self.seeds, self.folds
            )
        ]
