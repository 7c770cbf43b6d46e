"""What several commands share: results / leaderboard paths, the sweep arguments, rendering the
board after runs (also used by the SLURM executor's ``--wait``) and plain tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bench.cli.registry import UsageError


def default_leaderboard(results: Path) -> Path:
    """Where a leaderboard goes unless ``--leaderboard`` says otherwise: beside its records, i.e. in
    the folder that holds the results folder (``results/`` -> ``leaderboard.md`` next to it)."""
    return Path(results).resolve().parent / "leaderboard.md"


def results_folder(path: str, *, must_exist: bool) -> Path:
    """``--results``: a folder (created later when it need not exist yet)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--results {path}: is a file, not a folder of records")
    if must_exist and not p.exists():
        raise UsageError(f"--results {path}: no such folder")
    return p


def leaderboard_file(path: str | None, results: Path) -> Path:
    """``--leaderboard`` / ``--output``: the file to write (default: beside the results folder)."""
    out = Path(path) if path else default_leaderboard(results)
    if out.is_dir():
        raise UsageError(
            f"--leaderboard {out}: is a folder; give the file to write, e.g. {out / 'leaderboard.md'}"
        )
    if path and not out.parent.exists():
        raise UsageError(f"--leaderboard {out}: the folder {out.parent} does not exist")
    if out.is_file() and not _is_rendered_output(out):
        raise UsageError(
            f"--leaderboard {out}: is a sweep file or a run record, not a leaderboard; "
            "give another file to write"
        )
    return out


def _is_rendered_output(path: Path) -> bool:
    """Whether an existing file may be overwritten by a render: not a sweep file, not a record."""
    if path.suffix.lower() in (".yaml", ".yml"):
        return False
    if path.suffix.lower() == ".json":
        try:
            head = json.loads(path.read_text())
        except (OSError, ValueError):
            return True
        return not (isinstance(head, dict) and "run_id" in head)
    return True


def write_board(
    results: Path,
    out: Path,
    *,
    fmt: str = "md",
    plots: bool = True,
    equivalence_margin: float | None = None,
) -> Path:
    """Render the leaderboard (plots and HTML report beside the records), after removing the temp
    files of a render that was killed. Every command that renders after runs calls this."""
    from bench.leaderboard import write_leaderboard
    from bench.records import clean_stale_temp

    clean_stale_temp(out.parent, recursive=False)
    clean_stale_temp(results)
    return write_leaderboard(
        results, out, fmt=fmt, plots=plots, report=plots, equivalence_margin=equivalence_margin
    )


def add_sweep_args(parser: argparse.ArgumentParser) -> None:
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


def print_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns under a dashed header line."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
