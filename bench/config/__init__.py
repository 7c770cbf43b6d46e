"""The one typed config: a sweep file (YAML) plus CLI overrides becomes a validated ``SweepConfig``
whose ``expand()`` gives the frozen ``RunConfig`` of every run.

:mod:`bench.config.schema` holds the dataclass tree, :mod:`bench.config.load` the YAML reading,
overrides and the validation that names the bad field.
"""

from bench.config.load import (
    apply_overrides,
    load_sweep,
    parse_override,
    parse_yaml,
    read_sweep_file,
    run_from_dict,
    sweep_from_dict,
)
from bench.config.schema import (
    DEFAULT_SWEEP,
    ComponentSpec,
    ConfigError,
    DataConfig,
    EvalConfig,
    ObjectiveSpec,
    OptimConfig,
    ParamSpace,
    RunConfig,
    SweepConfig,
    TrackingConfig,
    TrainerConfig,
    TuneConfig,
)

__all__ = [
    "DEFAULT_SWEEP",
    "ComponentSpec",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ObjectiveSpec",
    "OptimConfig",
    "ParamSpace",
    "RunConfig",
    "SweepConfig",
    "TrackingConfig",
    "TrainerConfig",
    "TuneConfig",
    "apply_overrides",
    "load_sweep",
    "parse_override",
    "parse_yaml",
    "read_sweep_file",
    "run_from_dict",
    "sweep_from_dict",
]
