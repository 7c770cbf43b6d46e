"""What several commands share: results / leaderboard paths, the sweep arguments, rendering the
board after runs (also used by the SLURM executor's ``--wait``) and plain tables."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.cli.registry import UsageError
from bench.records.store import DEFAULT_RESULTS, leaderboard_path


def default_leaderboard(results: Path) -> Path:
    """Where a leaderboard goes unless ``--leaderboard`` says otherwise: inside its results folder
    (:func:`bench.records.store.leaderboard_path`), so two folders never share one."""
    try:
        return leaderboard_path(Path(results))
    except ValueError as e:
        raise UsageError(str(e)) from None


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
    about_to_exist = out.parent.resolve() == Path(results).resolve()  # the run creates it
    if path and not out.parent.exists() and not about_to_exist:
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
    plots: bool | None = None,
    all_pairs: bool = False,
    equivalence_margin: float | None = None,
) -> Path:
    """Render the leaderboard after removing the temp files of a render that was killed. Every
    command that renders after runs calls this.

    ``plots``: draw the figures and the HTML report (None: for Markdown, only when the records
    changed since they were drawn; never for the exports). ``all_pairs``: every pair of rows tested
    (the significance maps), not only each row against its column's best.
    """
    from bench.leaderboard import write_leaderboard
    from bench.records import clean_stale_temp

    if out.parent.exists():
        clean_stale_temp(out.parent, recursive=False)
    clean_stale_temp(results)
    return write_leaderboard(
        results,
        out,
        fmt=fmt,
        plots=plots,
        report=plots,
        all_pairs=all_pairs,
        equivalence_margin=equivalence_margin,
        results_name=results.as_posix(),
    )


def add_results_arg(parser: argparse.ArgumentParser) -> None:
    """``--results``: the folder of records a command writes or reads."""
    parser.add_argument(
        "--results",
        default=DEFAULT_RESULTS,
        help=f"folder of run records (default: {DEFAULT_RESULTS}/; the repository's reference records "
        "are under results/)",
    )


def add_sweep_args(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``run`` and ``tune``: sweep file, results folder, overrides, tracking."""
    parser.add_argument(
        "sweep", nargs="?", default=None, help="sweep YAML file (default: the built-in sweep)"
    )
    add_results_arg(parser)
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


def check_data(runs: Sequence[Any]) -> None:
    """Every dataset root of ``runs`` (:class:`~bench.config.RunConfig`), their own and their
    ``eval.external`` test sets', checked before anything trains
    (:meth:`datamodules.base.SegDataModule.check_available`: the case index, not the images).

    Raises:
        UsageError: naming the dataset entry (``datasets`` or ``eval.external``) and its folder.
    """
    from datamodules import dataset_entry

    seen = set()
    for cfg in runs:
        entries = [("datasets", cfg.dataset)]
        entries += [(f"eval.external[{i}]", e) for i, e in enumerate(getattr(cfg.eval, "external", ()) or ())]
        for where, spec in entries:
            kw = spec.kwargs
            key = (spec.name, str(kw.get("root")), bool(kw.get("download")))
            if key in seen:
                continue
            seen.add(key)
            cls = dataset_entry(spec.name).factory
            if not hasattr(cls, "check_available"):
                continue
            try:
                cls.check_available(kw.get("root"), download=bool(kw.get("download")))
            except ValueError as e:
                raise UsageError(f"{where}: {e}") from None


SUMMARY_ROWS = 12
"""Rows per table that ``segbench run`` prints at the end (the leaderboard has them all)."""


def print_summary(results: Path, run_ids: Sequence[str], *, limit: int = SUMMARY_ROWS) -> None:
    """Print the table(s) of the sweep's done runs: rank, row, the primary metric with its 95 %
    interval and the other ranking metrics' means. Nothing when no run of the sweep is done."""
    from bench.leaderboard import analyse_records
    from bench.leaderboard.format import row_title
    from bench.records import load_record, record_path

    records = [r for r in (load_record(record_path(results, i)) for i in run_ids) if r is not None and r.done]
    if not records:
        return
    for a in analyse_records(records):
        if not a.ranked or not a.rank_metrics:
            continue
        primary, others = a.rank_metrics[0], a.rank_metrics[1:]
        head = ["#", "model / loss", f"{primary} [95% interval]", *others]
        rows = []
        for row in a.ranked[:limit]:
            st = a.row_stats[row.key]
            p = st[primary]
            cell = f"{p.reduction['mean']:.3f} [{p.ci.lo:.3f}, {p.ci.hi:.3f}]"
            rank = a.agg_rank.get(primary, {}).get(row.key)
            marks = " (degenerate)" if row.key in a.collapsed else ""
            rows.append(
                [
                    "–" if rank is None else f"{rank:.0f}",
                    row_title(row, 40) + marks,
                    cell,
                    *(f"{st[m].reduction['mean']:.3g}" for m in others),
                ]
            )
        print(f"\n{a.table.label}: {len(a.ranked)} row(s), ranked by mean {primary}")
        print_table(head, rows)
        if len(a.ranked) > limit:
            print(f"… {len(a.ranked) - limit} more row(s) in the leaderboard")


KEEP_WARN_BYTES = 2 * 1024**3
"""Above this total of kept weights (``eval.keep_model: final``), ``segbench run`` says so once,
up front (``$SEGBENCH_KEEP_WARN_GB`` changes it)."""


def kept_weights_bytes(runs: Sequence[Any]) -> int:
    """About how many bytes the float32 weights of ``runs`` that keep their model will take: each
    distinct network is built once (resolved config, the dataset's dims and classes) and counted."""
    from functools import partial

    import torch

    import models
    from bench.run import resolve_run
    from datamodules import dataset_class

    per_spec: dict[str, int] = {}
    total = 0
    for cfg in runs:
        if getattr(cfg.eval, "keep_model", "final") != "final":
            continue
        r = resolve_run(cfg)
        key = json.dumps(
            [r.model.name, r.model.kwargs, r.dataset.name, r.dataset.kwargs], sort_keys=True, default=str
        )
        if key not in per_spec:
            cls = dataset_class(r.dataset.name, r.dataset.kwargs)
            build = partial(
                models.create_model,
                r.model.name,
                spatial_dims=int(cls.spatial_dims),
                in_channels=int(cls.in_channels),
                out_channels=int(cls.num_classes),
                **r.model.kwargs,
            )
            try:
                with torch.device("meta"):  # shapes only: nothing allocated, nothing initialised
                    net = build()
            except Exception:  # noqa: BLE001 - a model that computes while it is built
                net = build()
            per_spec[key] = 4 * models.count_parameters(net)
        total += per_spec[key]
    return total


def warn_kept_weights(runs: Sequence[Any], results: Path) -> int | None:
    """Print one line to stderr when the runs would keep more than :data:`KEEP_WARN_BYTES` of
    weights under ``<results>/models/``; returns the estimate (None when it could not be made,
    which never stops a run)."""
    import os
    import sys

    try:
        size = kept_weights_bytes(runs)
    except Exception:  # noqa: BLE001 - an estimate; the run itself reports real problems
        return None
    limit = float(os.environ.get("SEGBENCH_KEEP_WARN_GB", KEEP_WARN_BYTES / 1024**3)) * 1024**3
    if size > limit:
        print(
            f"segbench run: note: this sweep keeps about {size / 1024**3:.1f} GB of model weights under "
            f"{results}/models/ (more than {limit / 1024**3:.1f} GB); `-o eval.keep_model=none` keeps none",
            file=sys.stderr,
        )
    return size
