"""Optuna hyperparameter search on the validation split (``segbench tune``, docs/sweeps.md).

:mod:`bench.tune.search` runs the study (one trial = one ``RunConfig`` scored on validation),
:mod:`bench.tune.space` turns the sweep's ``tune.space`` into suggestions, samplers and pruners,
:mod:`bench.tune.storage` picks the study storage (SQLite under results/, or PostgreSQL).
"""

from bench.tune.search import tune_main

__all__ = ["tune_main"]
