"""Runs: plan a sweep, build and execute each run, write its record.

- :mod:`bench.run.plan`: configs as used (:func:`resolve_run`), checked (:func:`check_run`,
  :func:`plan_sweep`), and what a results folder holds for a run (:func:`run_state`);
- :mod:`bench.run.build`: the DataModule, LightningModule, callbacks and Trainer of a run;
- :mod:`bench.run.execute`: fit, test, evaluate, record (:func:`run_one`, :func:`run_claimed`,
  :func:`run_sweep`);
- :mod:`bench.run.launch` / :mod:`bench.run.rank`: multi-process ``ddp`` runs (the starter and
  the launched rank's entry point);
- :mod:`bench.run.callbacks`, :mod:`bench.run.memory`, :mod:`bench.run.tracking`: what a run
  measures and logs on the way;
- :mod:`bench.run.validation` (when and on how many cases a run validates), :mod:`bench.run.threads`
  (torch's threads), :mod:`bench.run.quiet` (Lightning's benign messages dropped) and
  :mod:`bench.run.progress` (one progress display per sweep).
"""

from bench.run.build import BuiltRun, build_datamodule, build_module, build_run, build_trainer
from bench.run.callbacks import CaseMetricsCallback
from bench.run.execute import execute_run, run_claimed, run_one, run_sweep
from bench.run.launch import device_count, needs_launch
from bench.run.plan import check_run, plan_sweep, resolve_run, run_state
from bench.run.validation import limit_val_cases

__all__ = [
    "BuiltRun",
    "CaseMetricsCallback",
    "device_count",
    "needs_launch",
    "build_datamodule",
    "build_module",
    "build_run",
    "build_trainer",
    "check_run",
    "execute_run",
    "limit_val_cases",
    "plan_sweep",
    "resolve_run",
    "run_claimed",
    "run_one",
    "run_state",
    "run_sweep",
]
