"""Optuna hyperparameter search over a sweep (``segbench tune``); see ``docs/sweeps.md``.

One study per (dataset, model, loss) of the sweep, named ``<sweep>__<dataset>__<model>__<loss>``.
A trial is a function ``RunConfig -> score``: the trial's parameters are written into the run's
config (dotted paths such as ``optim.lr``), the model is fitted on the train split and scored on
the validation split only (never the test split). Afterwards the best trial's config (for several
objectives: every trial of the Pareto front) is trained again and evaluated on the test split by
the normal runner (:func:`bench.run.run_one`); its record carries ``study``, ``trial`` and
``storage``. The search space (parameters -> config, sampler, pruner) lives in
:mod:`bench.tune.space`, the study storage in :mod:`bench.tune.storage`.

Several ``segbench tune`` workers can share one study (same ``--storage`` URL, e.g. PostgreSQL):
the study is loaded if it exists, trials of dead workers are failed by Optuna's heartbeat and
retried, and each worker checks the trial budget against the trials numbered before its own, so
the study ends with exactly ``n_trials`` finished (complete or pruned) trials.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import optuna
from lightning.pytorch.loggers import CSVLogger
from optuna.trial import TrialState

from bench.config import ConfigError, RunConfig, SweepConfig, TrackingConfig, TuneConfig, load_sweep
from bench.metrics import objective_value
from bench.run import (
    CaseMetricsCallback,
    build_datamodule,
    build_module,
    build_trainer,
    limit_val_cases,
    needs_launch,
    resolve_run,
    run_claimed,
)
from bench.tune.space import apply_params, make_pruner, make_sampler, suggest
from bench.tune.storage import default_storage, make_storage, public_url

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_ALIVE = (*FINISHED, TrialState.RUNNING)
_WAIT_SECONDS = 2.0  # how often a worker polls for trials running elsewhere


class BudgetReached(Exception):
    """Raised inside a trial that was created after the study's trial budget was taken."""


# ---- studies ------------------------------------------------------------------------------


def study_name(cfg: RunConfig) -> str:
    """``<sweep>__<dataset>__<model>__<loss>``."""
    return f"{cfg.sweep}__{cfg.dataset.name}__{cfg.model.name}__{cfg.loss.name.replace('*', 'x')}"


# ---- one trial: fit on train, score on val --------------------------------------------------


def score_on_val(
    cfg: RunConfig,
    work_dir: Path,
    metrics: Sequence[str],
    *,
    trial: optuna.Trial | None = None,
    loggers: Sequence[Any] = (),
    progress: bool = False,
) -> dict[str, float]:
    """Fit ``cfg`` on its train split and return the ``val_*`` ``metrics`` (never the test split).

    Metrics the module logs each validation (``val_dice``, ``val_loss``) are read after the last
    validation; any other ``val_<m>`` (e.g. ``val_betti1_err``) is the mean over the validation
    cases of ``bench.metrics.case_metrics``'s ``<m>``. With ``trial``, Optuna-integration's
    ``PyTorchLightningPruningCallback`` reports ``metrics[0]`` at every validation epoch and
    raises ``optuna.TrialPruned`` when the pruner says so. The validation cases are all of them
    unless the sweep sets ``trainer.val_max_cases`` (the runner's default cap is not applied here:
    the objective is read on the whole validation split).
    """
    val_max_cases = cfg.trainer.val_max_cases  # the sweep's own value; unset: every case
    cfg = resolve_run(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    limit_val_cases(dm, val_max_cases)
    module = build_module(cfg, dm)
    callbacks: list[L.Callback] = []
    if trial is not None:
        from optuna_integration import PyTorchLightningPruningCallback

        callbacks.append(PyTorchLightningPruningCallback(trial, monitor=metrics[0]))
    csv = CSVLogger(work_dir, name="csv", version="")
    trainer = build_trainer(cfg, work_dir, callbacks, [csv, *loggers], progress)
    trainer.fit(module, datamodule=dm)
    out = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
    missing = [m for m in metrics if m not in out]
    if missing:
        cb = CaseMetricsCallback(settings=cfg.eval.metric_settings())
        evaluator = L.Trainer(
            accelerator=cfg.trainer.accelerator,
            devices=1,
            logger=False,
            callbacks=[cb],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        evaluator.test(module, dataloaders=dm.val_dataloader(), verbose=False)  # the val cases
        for key in {k for row in cb.rows for k in row if k not in ("case_id", "raw")}:
            out.setdefault(f"val_{key}", objective_value(cb.rows, key))  # the one reduction
    unknown = [m for m in metrics if m not in out]
    if unknown:
        raise ConfigError(f"tune.objectives: unknown metric(s) {unknown}; available: {sorted(out)}")
    return out


class Objective:
    """``trial -> score`` for one study: parameters -> ``RunConfig`` -> :func:`score_on_val`."""

    def __init__(
        self,
        base: RunConfig,
        tune: TuneConfig,
        work_root: Path,
        *,
        n_trials: int,
        tracking: TrackingConfig | None = None,
        progress: bool = False,
    ) -> None:
        self.base = base
        self.tune = tune
        self.work_root = work_root
        self.n_trials = n_trials
        self.tracking = tracking
        self.progress = progress
        self.metrics = [o.metric for o in tune.objectives]

        self.started: list[int] = []  # trial numbers this worker ran (budget checks excluded)
        self.fatal: ConfigError | None = None

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        if over_budget(trial.study, trial.number, self.n_trials):
            raise BudgetReached(f"trial {trial.number}: the study already has {self.n_trials} trials")
        self.started.append(trial.number)
        if self.tune.seed is not None and self.tune.sampler != "grid":
            # draws depend on (seed, trial number), not on the worker: workers sharing a study
            # do not repeat each other's draws, and a one-worker study is reproducible
            trial.study.sampler = make_sampler(self.tune, seed=self.tune.seed + trial.number)
        try:
            return self._run(trial)
        except ConfigError as e:
            self.fatal = e  # a bad search space or objective: stop instead of retrying
            raise

    def _run(self, trial: optuna.Trial) -> float | list[float]:
        params = {path: suggest(trial, path, space) for path, space in self.tune.space.items()}
        cfg = apply_params(self.base, params)
        trial.set_user_attr("params", params)  # decoded values (categorical lists are JSON in Optuna)
        trial.set_user_attr("run_id", cfg.run_id)
        trial.set_user_attr("config", cfg.to_dict())
        work_dir = self.work_root / f"trial_{trial.number:04d}"
        loggers = []
        if self.tracking is not None and self.tracking.wandb:
            from bench.run.tracking import wandb_logger

            name = f"{trial.study.study_name}__trial{trial.number}"
            loggers.append(
                wandb_logger(
                    cfg, self.tracking, work_dir, name=name, group=trial.study.study_name, job_type="trial"
                )
            )
        failed = True
        try:
            values = score_on_val(
                cfg,
                work_dir,
                self.metrics,
                trial=trial if len(self.metrics) == 1 else None,
                loggers=loggers,
                progress=self.progress,
            )
            failed = False
        finally:
            if loggers:
                from bench.run.tracking import finish

                finish(loggers[0], failed=failed)
        trial.set_user_attr("val", values)
        scores = [values[m] for m in self.metrics]
        return scores[0] if len(scores) == 1 else scores


def over_budget(study: optuna.Study, number: int, n_trials: int) -> bool:
    """True when ``n_trials`` live or finished trials are numbered before ``number``.

    Trial numbers are assigned under a lock on the study row, so every worker sees the same
    order; a trial runs only if fewer than ``n_trials`` trials before it can still finish. Hence
    at most ``n_trials`` trials finish, however many workers race for the last slot.
    """
    states = (*_ALIVE, TrialState.WAITING)
    return sum(t.number < number for t in study.get_trials(deepcopy=False, states=states)) >= n_trials


def _count(study: optuna.Study, states: tuple[TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def optimize(study: optuna.Study, objective: Objective, n_trials: int, *, max_failures: int) -> None:
    """Run trials until the study holds ``n_trials`` finished ones (waiting for other workers).

    Raises:
        RuntimeError: when more than ``max_failures`` trials of this worker raised.
    """
    failures = 0
    while _count(study, FINISHED) < n_trials:
        if _count(study, _ALIVE) >= n_trials:  # the rest is running elsewhere: wait for it
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial is failed + retried
            time.sleep(_WAIT_SECONDS)
            continue
        ran = len(objective.started)
        study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
        if objective.fatal is not None:
            raise objective.fatal
        for number in objective.started[ran:]:
            failures += study.trials[number].state == TrialState.FAIL
        if failures > max_failures:
            raise RuntimeError(f"study {study.study_name}: {failures} trials failed; see the log above")


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best trial (one objective) or the Pareto front (several), by trial number."""
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.number)


# ---- segbench tune ------------------------------------------------------------------------


def tune_study(
    sweep: SweepConfig,
    base: RunConfig,
    results: Path,
    storage: str,
    *,
    n_trials: int | None = None,
    tracking: TrackingConfig | None = None,
    progress: bool = False,
) -> tuple[optuna.Study, list[dict[str, Any]]]:
    """Run (or join) the study of ``base``'s (dataset, model, loss); evaluate its best on test.

    Returns:
        The study and the records of the best config(s) evaluated now by this worker (a worker
        that finds them done or claimed by another worker returns no record for them).
    """
    tune = sweep.tune
    n = n_trials or tune.n_trials
    if tune.sampler == "grid":  # no more trials than grid points (Optuna would repeat points)
        n = min(n, math.prod(len(s.choices) for s in tune.space.values()))
    name = study_name(base)
    study = optuna.create_study(
        study_name=name,
        storage=make_storage(storage, tune),
        sampler=make_sampler(tune),
        pruner=make_pruner(tune),
        directions=[o.direction for o in tune.objectives],
        load_if_exists=True,
    )
    study.set_user_attr("objectives", [dataclasses.asdict(o) for o in tune.objectives])
    study.set_user_attr("n_trials", n)
    objective = Objective(
        base, tune, results / ".tune" / name, n_trials=n, tracking=tracking, progress=progress
    )
    optimize(study, objective, n, max_failures=n)
    records: list[dict[str, Any]] = []
    if not tune.evaluate_best:
        return study, records
    runs = [r for r in sweep.expand() if study_name(r) == name]
    for best in best_trials(study):
        params = best.user_attrs.get("params") or {k: best.params[k] for k in tune.space if k in best.params}
        extra = {"study": name, "trial": best.number, "storage": public_url(storage)}
        extra["val"] = best.user_attrs.get("val", {})
        for run in runs:  # every seed and fold of the sweep, with the tuned parameters
            record = run_claimed(
                apply_params(run, params), results, tracking=tracking, progress=progress, extra=extra
            )
            if record is not None:
                records.append(record)
    return study, records


def tune_main(args: argparse.Namespace) -> int:
    """``segbench tune SWEEP``: one study per (dataset, model, loss); returns the exit code."""
    sweep = load_sweep(args.sweep, args.override)
    if not sweep.tune.space:
        raise ConfigError(f"{args.sweep}: tune.space is empty; nothing to search")
    if needs_launch(sweep.trainer):
        raise ConfigError("trainer: tune trials run in one process; tune with devices=1 (not ddp)")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    storage = args.storage or default_storage(results)
    seen: set[str] = set()
    failed = 0
    for base in sweep.expand():
        if study_name(base) in seen:
            continue  # one study per (dataset, model, loss): seeds and folds share it
        seen.add(study_name(base))
        study, records = tune_study(
            sweep,
            base,
            results,
            storage,
            n_trials=args.n_trials,
            tracking=sweep.tracking,
            progress=not args.quiet,
        )
        done = _count(study, FINISHED)
        print(f"study {study.study_name}: {done} finished trial(s) in {public_url(storage)}")
        for t in best_trials(study):
            print(f"  best trial {t.number}: values={t.values} params={t.params}")
        for r in records:
            print(f"  test record {r.run_id}: {r.status}")
            failed += r.status == "failed"
    return 1 if failed else 0
