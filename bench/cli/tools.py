"""``segbench evaluate | ensemble | status | tune | bench``: the commands whose work lives in
another package (evaluate/, cluster/, tune/, perf/); here they are registered and their
arguments checked."""

from __future__ import annotations

import argparse
import importlib

from bench.cli import cache
from bench.cli.common import add_sweep_args, results_folder
from bench.cli.registry import UsageError, register_command
from bench.cluster import status
from bench.evaluate import ensemble, export, outside, predict

register_command(
    "evaluate",
    help="score a folder of predictions made elsewhere (docs/evaluate.md)",
    arguments=outside.add_arguments,
)(outside.main)
register_command(
    "ensemble",
    help="seed ensembles: mean probabilities of a row's seeds, scored as a row",
    arguments=ensemble.add_arguments,
)(ensemble.main)
register_command(
    "predict",
    help="label maps of a kept or exported model on new images or a dataset's split (docs/predict.md)",
    arguments=predict.add_arguments,
)(predict.main)


@register_command(
    "export",
    help="a run's kept model as a folder with a model card; --onnx / --torchscript (docs/predict.md)",
    arguments=export.add_arguments,
)
def export_command(args: argparse.Namespace) -> int:
    """``segbench export``: the card states the run's record and its leaderboard row, analysed here
    from the records of the run's results folder (the folder of a record file given as RUN)."""
    import dataclasses
    from pathlib import Path

    from bench.evaluate.predict import find_model
    from bench.leaderboard.card import row_of_run
    from bench.records import load_records

    source = find_model(args.run, args.results)
    row = None
    if source.record is not None:
        given = Path(args.run)
        folder = given.parent if str(args.run).endswith(".json") and given.is_file() else Path(args.results)
        records, _ = load_records(folder)
        found = row_of_run(records, source.record.run_id)
        row = dataclasses.asdict(found) if found is not None else None
    return export.main(args, row=row)


register_command(
    "status",
    help="per run: done / running (job, node) / failed (error) / to run",
    arguments=status.add_arguments,
)(status.main)


def _tune_arguments(t: argparse.ArgumentParser) -> None:
    add_sweep_args(t)
    t.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite under results/)")
    t.add_argument("--n-trials", type=int, default=None)


@register_command(
    "tune", help="Optuna hyperparameter search over a sweep's search space", arguments=_tune_arguments
)
def tune_command(args: argparse.Namespace) -> int:
    """Optuna search on the validation split (docs/sweeps.md)."""
    from bench.tune import tune_main

    if args.n_trials is not None and args.n_trials < 1:
        raise UsageError(f"--n-trials: must be >= 1, got {args.n_trials}")
    results_folder(args.results, must_exist=False)
    return tune_main(args)


register_command(
    "cache",
    help="the case cache: folder, size, entries; --clear deletes it (docs/cache.md)",
    arguments=cache.add_arguments,
)(cache.main)

BENCHMARKS = ("metrics", "models", "layout", "suite", "leaderboard", "data_memory", "gpu")
"""The speed benchmarks under ``bench/perf/`` that ``segbench bench`` runs."""


def _bench_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("what", choices=list(BENCHMARKS))
    b.add_argument("rest", nargs=argparse.REMAINDER)


@register_command(
    "bench",
    help="speed benchmarks: `segbench bench metrics|models|layout|suite|leaderboard|data_memory|gpu [args]`",
    arguments=_bench_arguments,
)
def bench_command(args: argparse.Namespace) -> int:
    """Run one speed benchmark script with the remaining arguments."""
    module = importlib.import_module(f"bench.perf.{args.what}")
    return int(module.main(args.rest))
