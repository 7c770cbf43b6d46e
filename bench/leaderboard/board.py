"""The leaderboard's entry points: records -> tables -> analyses -> text and files.

:func:`write_leaderboard` is what ``segbench leaderboard`` (and ``segbench run`` after its runs)
calls: it reads the records under a results folder, analyses each table, draws the figures, writes
the HTML report and writes the leaderboard in one format. :func:`render` does the same in memory
for records at hand. The work itself is in the peers this module wires together:
:mod:`~bench.leaderboard.rows`, :mod:`~bench.leaderboard.analysis`,
:mod:`~bench.leaderboard.markdown`, :mod:`~bench.leaderboard.exports`,
:mod:`~bench.leaderboard.html` and :mod:`~bench.leaderboard.plots`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.leaderboard import stats
from bench.leaderboard.analysis import Analysis, analyse
from bench.leaderboard.degenerate import load_references
from bench.leaderboard.exports import EXPORTS, render_export
from bench.leaderboard.html import write_report
from bench.leaderboard.markdown import render_markdown
from bench.leaderboard.plots import render_plots
from bench.leaderboard.rows import group_records
from bench.records.record import Record
from bench.records.store import load_records, write_text_atomic
from bench.records.supersede import Superseded, superseded

FORMATS = ("md", *EXPORTS)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def analyse_records(
    records: Iterable[Record | Mapping[str, Any]],
    *,
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    n_resamples: int = stats.N_RESAMPLES,
    equivalence_margin: float | None = None,
) -> list[Analysis]:
    """One :class:`Analysis` per table of ``records`` (a stored JSON dict is read as a :class:`Record`);
    ``equivalence_margin``: the TOST margin against each column's best (None: no equivalence claim)."""
    typed = [r if isinstance(r, Record) else Record.from_dict(r) for r in records]
    refs = load_references(typed)  # constant baselines of every table serve their dataset's rows
    kw = {
        "metrics": metrics,
        "seed": seed,
        "n_resamples": n_resamples,
        "equivalence_margin": equivalence_margin,
    }
    return [analyse(t, **kw, references=refs) for t in group_records(typed)]


def render_analyses(
    analyses: Sequence[Analysis],
    fmt: str = "md",
    *,
    links_base: str | None = None,
    problems: Sequence[tuple[Path, str]] = (),
    superseded: Sequence[Superseded] = (),
) -> str:
    """Render analysed tables as ``md``, ``csv``, ``json`` or ``latex``."""
    _check_format(fmt)
    if fmt != "md":
        return render_export(analyses, fmt, problems=problems)
    return render_markdown(analyses, links_base=links_base, problems=problems, superseded=superseded)


def render(
    records: Iterable[Record | Mapping[str, Any]],
    fmt: str = "md",
    *,
    results_dir: Path | None = None,
    plots: bool = True,
    metrics: Sequence[str] | None = None,
    problems: Sequence[tuple[Path, str]] = (),
    links_base: str | None = None,
    seed: int = 0,
    n_resamples: int = stats.N_RESAMPLES,
    workers: int = 1,
    equivalence_margin: float | None = None,
) -> str:
    """The leaderboard of ``records`` as text in ``fmt``.

    With ``results_dir`` and ``plots``, the PNGs are rendered under ``<results_dir>/plots/`` (by
    ``workers`` processes) and the Markdown links to them (relative to ``links_base``, default
    ``<results_dir>/plots``).
    """
    _check_format(fmt)
    analyses = analyse_records(
        records, metrics=metrics, seed=seed, n_resamples=n_resamples, equivalence_margin=equivalence_margin
    )
    if results_dir is not None and plots:
        render_plots(analyses, Path(results_dir), workers=workers)
        if links_base is None:
            links_base = str(Path(results_dir) / "plots")
    gone = superseded(Path(results_dir)) if results_dir is not None else []
    return render_analyses(
        analyses, fmt, links_base=links_base if plots else None, problems=problems, superseded=gone
    )


def write_leaderboard(
    results: Path,
    out: Path,
    *,
    fmt: str = "md",
    plots: bool = True,
    report: bool = True,
    metrics: Sequence[str] | None = None,
    workers: int = 1,
    equivalence_margin: float | None = None,
) -> Path:
    """Render the records under ``results`` into ``out`` (atomically), plus plots and the HTML report.

    Args:
        workers: processes drawing the figures; 1 draws them in this process.
        equivalence_margin: TOST margin against each column's best (``--equivalence-margin``).

    Raises:
        ValueError: when ``results`` holds no record (``out`` is left untouched) or ``fmt`` is unknown.
    """
    results, out = Path(results), Path(out)
    _check_format(fmt)
    records, problems = load_records(results) if results.is_dir() else ([], [])
    if not records:
        raise ValueError(f"{results}: no run record found (`segbench run` writes them)")
    shown = [(p.relative_to(results) if p.is_relative_to(results) else p, why) for p, why in problems]
    analyses = analyse_records(records, metrics=metrics, equivalence_margin=equivalence_margin)
    links_base = None
    if plots:
        render_plots(analyses, results, workers=workers)
        links_base = Path(os.path.relpath((results / "plots").resolve(), out.parent.resolve())).as_posix()
    if report:
        write_report(analyses, results, problems=shown, plots=plots)
    text = render_analyses(
        analyses, fmt, links_base=links_base, problems=shown, superseded=superseded(results)
    )
    write_text_atomic(out, text)
    return out
