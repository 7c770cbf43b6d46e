"""Optuna search space for ``segbench tune``: draw parameters, write them into a ``RunConfig``.

A trial's parameters are dotted config paths (``optim.lr``, ``model.kwargs.channels``,
``loss.weights.<term>``); :func:`apply_params` writes them into a copy of the run's config.
The sampler and pruner are built from ``tune`` here too. See ``docs/sweeps.md``.
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from bench.config import ConfigError, ParamSpace, RunConfig, TuneConfig, run_from_dict

_PRIMITIVE = (type(None), bool, int, float, str)


def suggest(trial: optuna.Trial, name: str, space: ParamSpace) -> Any:
    """Draw ``name`` from ``space``; non-primitive categorical choices travel as JSON strings."""
    if space.type == "float":
        return trial.suggest_float(name, space.low, space.high, log=space.log, step=space.step)
    if space.type == "int":
        step = int(space.step or 1)
        return trial.suggest_int(name, int(space.low), int(space.high), step=step, log=space.log)
    choices = list(space.choices)
    if all(isinstance(c, _PRIMITIVE) for c in choices):
        return trial.suggest_categorical(name, choices)
    return json.loads(trial.suggest_categorical(name, [json.dumps(c) for c in choices]))


def _grid_space(tune: TuneConfig) -> dict[str, list[Any]]:
    return {
        name: list(s.choices)
        if all(isinstance(c, _PRIMITIVE) for c in s.choices)
        else [json.dumps(c) for c in s.choices]
        for name, s in tune.space.items()
    }


def set_loss_weight(name: str, term: str, weight: float) -> str:
    """``set_loss_weight("dice+0.5*cldice", "cldice", 0.3)`` -> ``"dice+0.3*cldice"``."""
    from models import parse_loss_name

    terms = parse_loss_name(name)
    if term not in [n for _, n in terms]:
        raise ConfigError(f"loss.weights.{term}: the loss {name!r} has no term {term!r}")
    weights = [(weight if n == term else w, n) for w, n in terms]
    return "+".join(n if w == 1 else f"{w:.6g}*{n}" for w, n in weights)


def apply_params(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """A copy of ``cfg`` with every dotted path of ``params`` set (validated like a sweep file).

    ``loss.weights.<term>`` rewrites that term's weight in a composite loss name.
    """
    data = cfg.to_dict()
    for path, value in params.items():
        keys = path.split(".")
        if keys[:2] == ["loss", "weights"] and len(keys) == 3:
            data["loss"]["name"] = set_loss_weight(data["loss"]["name"], keys[2], float(value))
            continue
        node = data
        for k in keys[:-1]:
            if not isinstance(node.get(k, {}), dict):
                raise ConfigError(f"tune.space.{path}: {k} is not a mapping")
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    try:
        return run_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"tune.space: {e}") from None


def make_sampler(tune: TuneConfig, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """``tpe`` (default; multi-objective capable), ``random`` or ``grid`` (categorical spaces).

    ``seed`` defaults to ``tune.seed``; :class:`bench.tune.search.Objective` reseeds per trial (see there).
    """
    kw = dict(tune.sampler_kwargs)
    seed = tune.seed if seed is None else seed
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed, **kw)
    if tune.sampler == "grid":
        return optuna.samplers.GridSampler(_grid_space(tune), seed=seed, **kw)
    return optuna.samplers.TPESampler(seed=seed, **kw)


def make_pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    """The configured pruner; Optuna cannot prune multi-objective studies (``NopPruner`` then)."""
    kw = dict(tune.pruner_kwargs)
    if len(tune.objectives) > 1 or tune.pruner == "none":
        return optuna.pruners.NopPruner()
    if tune.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**kw)
    if tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(**kw)
    return optuna.pruners.MedianPruner(**kw)
