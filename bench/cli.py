"""``segbench`` command line: run, leaderboard, models, losses, datasets, tune, bench."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.config import DEFAULT_SWEEP, ConfigError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(
    name: str,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register a sub-command handler."""

    def deco(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn

    return deco


@command("run")
def _run(args: argparse.Namespace) -> int:
    if args.print_default:
        print(DEFAULT_SWEEP.read_text(), end="")
        return 0
    from bench.config import load_sweep
    from bench.leaderboard import write_leaderboard
    from bench.runner import run_sweep

    sweep = load_sweep(args.sweep, args.override)
    _check_names(sweep)
    records = run_sweep(sweep, Path(args.results), force=args.force, progress=not args.quiet)
    failed = [r for r in records if r["status"] == "failed"]
    print(f"{len(records)} run(s) executed, {len(failed)} failed; records in {args.results}/")
    if not args.no_leaderboard:
        out = write_leaderboard(Path(args.results), Path(args.leaderboard))
        print(f"leaderboard written to {out}")
    return 1 if failed else 0


def _check_names(sweep: object) -> None:
    """Fail before training anything when a sweep names an unknown model, loss or dataset."""
    from datamodules import dataset_entry
    from models import model_entry
    from models.losses import parse_loss_name

    for spec in sweep.models:  # type: ignore[attr-defined]
        model_entry(spec.name)
    for spec in sweep.losses:  # type: ignore[attr-defined]
        parse_loss_name(spec.name)
    for spec in sweep.datasets:  # type: ignore[attr-defined]
        dataset_entry(spec.name)


@command("leaderboard")
def _leaderboard(args: argparse.Namespace) -> int:
    from bench.leaderboard import write_leaderboard

    out = write_leaderboard(Path(args.results), Path(args.output))
    print(f"leaderboard written to {out}")
    return 0


@command("models")
def _models(args: argparse.Namespace) -> int:
    import models

    rows = []
    for entry in models.MODELS:
        dims = entry.meta["dims"]
        net = models.create_model(entry.name, spatial_dims=dims[0], in_channels=1, out_channels=2)
        rows.append(
            (
                entry.name,
                entry.meta["family"],
                "/".join(f"{d}D" for d in dims),
                f"{models.count_parameters(net) / 1e6:.2f} M",
                entry.description,
            )
        )
    _table(("model", "family", "dims", "params", "description"), rows)
    return 0


@command("losses")
def _losses(args: argparse.Namespace) -> int:
    from models.losses import LOSSES

    _table(
        ("loss", "dims", "description"),
        [(e.name, "/".join(f"{d}D" for d in e.meta["dims"]), e.description) for e in LOSSES],
    )
    return 0


@command("datasets")
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


@command("tune")
def _tune(args: argparse.Namespace) -> int:
    from bench.sweep import tune_main

    return tune_main(args)


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    import importlib

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
        help="override a sweep field, e.g. -o trainer.max_steps=10 (repeatable)",
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
    r.add_argument("--leaderboard", default="leaderboard.md", help="where to render the leaderboard")
    r.add_argument("--force", action="store_true", help="re-run runs that are already done")
    r.add_argument("--no-leaderboard", action="store_true", help="do not render leaderboard.md")
    r.add_argument("--print-default", action="store_true", help="print the built-in sweep file and exit")

    lb = sub.add_parser("leaderboard", help="render leaderboard.md from the records")
    lb.add_argument("--results", default="results")
    lb.add_argument("--output", "-o", default="leaderboard.md")

    sub.add_parser("models", help="list registered models with family, dims and parameter count")
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

    b = sub.add_parser("bench", help="speed benchmarks: `segbench bench metrics|models [args]`")
    b.add_argument("what", choices=["metrics", "models"])
    b.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segbench`` console command."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, KeyError, ValueError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"segbench {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
