"""``segbench`` command line: run, leaderboard, evaluate, ensemble, status, models, losses, datasets,
tune, bench.

Every user mistake ends in one line, ``segbench <command>: error: <file or field>: <what is
wrong>``, and exit code 2; nothing a user can get wrong prints a traceback.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.config import DEFAULT_SWEEP, ConfigError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
# name -> the modules a sub-command imports before it starts work (see ``main(fast_start=True)``)
COMMAND_IMPORTS: dict[str, tuple[str, ...]] = {}

# Sub-commands that live in their own module: name -> (module, help). The module exposes
# ``add_arguments(parser)`` and ``main(args) -> int``.
_MODULE_COMMANDS = {
    "evaluate": ("bench.evaluate", "score a folder of predictions made elsewhere (docs/evaluate.md)"),
    "ensemble": ("bench.ensemble", "seed ensembles: mean probabilities of a row's seeds, scored as a row"),
    "status": ("bench.status", "per run: done / running (job, node) / failed (error) / to run"),
}


class UsageError(ValueError):
    """A bad command-line argument (a path that is a file where a folder is needed, ...)."""


def command(
    name: str, imports: tuple[str, ...] = ()
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register a sub-command handler and the modules it imports (:data:`COMMAND_IMPORTS`)."""

    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        COMMAND_IMPORTS[name] = imports
        return fn

    return deco


def default_leaderboard(results: Path) -> Path:
    """Where a leaderboard goes unless ``--leaderboard`` says otherwise: beside its records, i.e. in
    the folder that holds the results folder (``results/`` -> ``leaderboard.md`` next to it)."""
    return Path(results).resolve().parent / "leaderboard.md"


def _results_folder(path: str, *, must_exist: bool) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--results {path}: is a file, not a folder of records")
    if must_exist and not p.exists():
        raise UsageError(f"--results {path}: no such folder")
    return p


def _leaderboard_file(path: str | None, results: Path) -> Path:
    out = Path(path) if path else default_leaderboard(results)
    if out.is_dir():
        raise UsageError(
            f"--leaderboard {out}: is a folder; give the file to write, e.g. {out / 'leaderboard.md'}"
        )
    if path and not out.parent.exists():
        raise UsageError(f"--leaderboard {out}: the folder {out.parent} does not exist")
    return out


@command("run", imports=("bench.runner", "bench.leaderboard", "bench.plots", "bench.report"))
def _run(args: argparse.Namespace) -> int:
    if args.print_default:
        print(DEFAULT_SWEEP.read_text(), end="")
        return 0
    from bench.config import load_sweep
    from bench.runner import plan_sweep, run_state, run_sweep

    results = _results_folder(args.results, must_exist=False)
    board = None if args.no_leaderboard else _leaderboard_file(args.leaderboard, results)
    sweep = load_sweep(args.sweep, args.override)
    runs = plan_sweep(sweep)  # every run validated before the first one starts
    if args.dry_run:
        states = [(cfg.run_id, run_state(results, cfg)) for cfg in runs]
        for run_id, state in states:
            print(f"{state:7s} {run_id}")
        counts = {s: sum(1 for _, x in states if x == s) for s in ("done", "failed", "to run")}
        print(
            f"{len(states)} run(s): {counts['done']} done, {counts['failed']} failed, "
            f"{counts['to run']} to run (dry run: nothing trained)"
        )
        return 0
    if getattr(args, "executor", "local") == "slurm":
        from bench.slurm import submit_sweep

        return submit_sweep(args.sweep, args.override, results, args)
    if hasattr(args, "executor"):
        from bench.slurm import check_local_options

        check_local_options(args)  # e.g. --partition without --executor slurm is an error
    done_before = sum(run_state(results, cfg) == "done" for cfg in runs)
    records = run_sweep(sweep, results, force=args.force, progress=not args.quiet, runs=runs)
    failed = [r for r in records if r["status"] == "failed"]
    if not records and done_before == len(runs) and not args.force:
        print(
            f"all {len(runs)} run(s) of sweep {sweep.name!r} are done already in {results}/; "
            "`segbench run --force` re-runs them, `segbench leaderboard` re-renders the table"
        )
    else:
        print(
            f"{len(records)} run(s) executed, {len(failed)} failed, {done_before} done already; "
            f"records in {results}/"
        )
    if board is not None:
        out = _write_board(results, board)
        print(f"leaderboard written to {out}")
    return 1 if failed else 0


@command("leaderboard", imports=("bench.leaderboard", "bench.plots", "bench.report"))
def _leaderboard(args: argparse.Namespace) -> int:
    results = _results_folder(args.results, must_exist=True)
    out = _leaderboard_file(args.output, results)
    if args.format != "md" and args.output is None:
        out = out.with_suffix({"csv": ".csv", "json": ".json", "latex": ".tex"}[args.format])
    out = _write_board(results, out, fmt=args.format, plots=not args.no_plots)
    print(f"leaderboard written to {out}")
    return 0


def _write_board(results: Path, out: Path, *, fmt: str = "md", plots: bool = True) -> Path:
    """Render the leaderboard (plots and HTML report beside the records), after removing the temp
    files of a render that was killed."""
    from bench.leaderboard import write_leaderboard
    from bench.store import clean_stale_temp

    clean_stale_temp(out.parent, recursive=False)
    clean_stale_temp(results)
    return write_leaderboard(results, out, fmt=fmt, plots=plots, report=plots)


@command("models", imports=("models",))
def _models(args: argparse.Namespace) -> int:
    import models

    rows = []
    for entry in models.MODELS:
        dims = entry.meta["dims"]
        size = {}
        for label, kw in (("default", {}), ("small", entry.meta.get("small") or None)):
            if kw is None:
                size[label] = "–"
                continue
            net = models.create_model(entry.name, spatial_dims=dims[0], in_channels=1, out_channels=2, **kw)
            size[label] = f"{models.count_parameters(net) / 1e6:.2f} M"
        rows.append(
            (
                entry.name,
                entry.meta["family"],
                "/".join(f"{d}D" for d in dims),
                size["default"],
                size["small"],
                entry.description,
            )
        )
    _table(("model", "family", "dims", "params", "params (small)", "description"), rows)
    return 0


@command("losses", imports=("models",))
def _losses(args: argparse.Namespace) -> int:
    from models import LOSSES

    _table(
        ("loss", "dims", "targets", "description"),
        [
            (e.name, "/".join(f"{d}D" for d in e.meta["dims"]), e.meta.get("targets", "label"), e.description)
            for e in LOSSES
        ],
    )
    return 0


@command("datasets", imports=("datamodules",))
def _datasets(args: argparse.Namespace) -> int:
    from datamodules import DATASETS

    rows = []
    for e in DATASETS:
        cls = e.factory
        root = Path(args.root) / cls.folder if args.root and getattr(cls, "folder", "") else None
        info = cls.dataset_info(root)
        embedded = not info["urls"] and not getattr(cls, "folder", "")
        local = "embedded" if embedded else ("yes" if info["present"] else "no")
        licence = info["license"] or "–"
        rows.append(
            (
                e.name,
                f"{info['spatial_dims']}D",
                str(info["num_cases"] or "–"),
                local,
                licence if len(licence) <= 50 else licence[:49] + "…",
                info["task"],
            )
        )
    _table(("dataset", "dims", "cases", "local", "license", "task"), rows)
    return 0


@command("tune", imports=("bench.sweep",))
def _tune(args: argparse.Namespace) -> int:
    from bench.sweep import tune_main

    if args.n_trials is not None and args.n_trials < 1:
        raise UsageError(f"--n-trials: must be >= 1, got {args.n_trials}")
    _results_folder(args.results, must_exist=False)
    return tune_main(args)


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"bench.perf.{args.what}")
    return int(module.main(args.rest) or 0)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _add_sweep_args(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``run`` and ``tune``: sweep file, results folder, overrides, tracking."""
    parser.add_argument(
        "sweep", nargs="?", default=None, help="sweep YAML file (default: the built-in sweep)"
    )
    parser.add_argument("--results", default="results", help="folder of run records (default: results)")
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a sweep field, e.g. -o trainer.max_steps=10 (repeatable; values parsed as YAML)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--no-wandb",
        dest="override",
        action="append_const",
        const="tracking.wandb=false",
        help="switch wandb tracking off (same as -o tracking.wandb=false); CSV logs are kept",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    p = argparse.ArgumentParser(
        prog="segbench", description="Benchmark suite for medical image segmentation."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a sweep (default: the built-in sweep on embedded data)")
    _add_sweep_args(r)
    r.add_argument(
        "--leaderboard",
        default=None,
        help="where to render the leaderboard (default: leaderboard.md beside the results folder)",
    )
    r.add_argument("--force", action="store_true", help="re-run runs that are already done")
    r.add_argument("--no-leaderboard", action="store_true", help="do not render the leaderboard")
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the sweep and print each run id with done / failed / to run; train nothing",
    )
    r.add_argument("--print-default", action="store_true", help="print the built-in sweep file and exit")
    try:
        from bench.slurm import add_arguments as add_slurm_arguments
    except ImportError:  # submitit missing: the local executor only
        pass
    else:
        add_slurm_arguments(r)

    lb = sub.add_parser("leaderboard", help="render the leaderboard from the records")
    lb.add_argument("--results", default="results", help="folder of run records (default: results)")
    lb.add_argument(
        "--output",
        "--leaderboard",
        "-o",
        dest="output",
        default=None,
        help="file to write (default: leaderboard.md beside the results folder)",
    )
    lb.add_argument("--format", choices=("md", "csv", "json", "latex"), default="md")
    lb.add_argument("--no-plots", action="store_true", help="skip the plots and the HTML report")

    for name, (module, help_text) in _MODULE_COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        sp = sub.add_parser(name, help=help_text)
        mod.add_arguments(sp)
        COMMANDS[name] = mod.main

    sub.add_parser("models", help="list registered models with family, dims and parameter counts")
    sub.add_parser("losses", help="list registered losses")
    ds = sub.add_parser("datasets", help="list datasets with task, dims, cases, licence, local presence")
    ds.add_argument(
        "--root",
        default=None,
        help="a folder holding release folders (DRIVE/, HRF/ ...) to check presence in; "
        "default: each dataset's default root ($SEGBENCH_DATA/<folder>)",
    )

    t = sub.add_parser("tune", help="Optuna hyperparameter search over a sweep's search space")
    _add_sweep_args(t)
    t.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite under results/)")
    t.add_argument("--n-trials", type=int, default=None)

    b = sub.add_parser("bench", help="speed benchmarks: `segbench bench metrics|models|suite [args]`")
    b.add_argument("what", choices=["metrics", "models", "suite"])
    b.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def main(argv: Sequence[str] | None = None, *, fast_start: bool = False) -> int:
    """Entry point of the ``segbench`` console command.

    ``fast_start`` (the console command, :func:`entry`): the cyclic garbage collector is off while
    the parser and the command's modules (:data:`COMMAND_IMPORTS`) import, and the half a million
    objects torch, Lightning and MONAI create are then frozen (``gc.freeze``: never traversed
    again) before the collector is back on for the command's own work. On 2 CPU cores the
    collections during those imports took about a second. Off for in-process callers (tests),
    whose objects must stay collectable.
    """
    if fast_start:
        gc.disable()
    try:
        args = build_parser().parse_args(argv)
        if fast_start:
            for module in COMMAND_IMPORTS.get(args.command, ()):
                importlib.import_module(module)
    finally:
        if fast_start:
            gc.freeze()
            gc.enable()
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, KeyError, ValueError, OSError) as e:
        print(f"segbench {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segbench {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The console command: :func:`main` with ``fast_start``, then exit with its code.

    Before the interpreter exits, every object still alive is frozen (``gc.freeze``): its final
    collections then skip the half a million objects that importing torch, Lightning and MONAI
    created, which took about 1.6 s per command on 2 CPU cores. Files are closed and ``atexit``
    hooks run as before; only the search for garbage cycles among those objects is skipped.
    """
    code = main(fast_start=True)
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
