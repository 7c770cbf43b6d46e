"""The leaderboard's entry points: records -> tables -> analyses -> text and files.

:func:`write_leaderboard` is what ``segbench leaderboard`` (and ``segbench run`` after its runs)
calls: it reads the records under a results folder, analyses each table (reading back the tables
whose records did not change from :mod:`~bench.leaderboard.cache`), writes the leaderboard in one
format and, for Markdown, draws the figures and writes the HTML report when the records changed
since they were drawn. :func:`render` does the same in memory for records at hand. The work itself
is in the peers this module wires together: :mod:`~bench.leaderboard.rows`,
:mod:`~bench.leaderboard.analysis`, :mod:`~bench.leaderboard.markdown`,
:mod:`~bench.leaderboard.exports`, :mod:`~bench.leaderboard.html` and :mod:`~bench.leaderboard.plots`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.leaderboard import stats
from bench.leaderboard.analysis import Analysis, analyse
from bench.leaderboard.cache import (
    AnalysisCache,
    AnalysisOptions,
    DrawnStamp,
    plots_present,
    set_digest,
    table_key,
)
from bench.leaderboard.degenerate import load_references
from bench.leaderboard.exports import EXPORTS, render_export
from bench.leaderboard.html import write_report
from bench.leaderboard.markdown import render_markdown
from bench.leaderboard.plots import remove_stale_plots, render_plots
from bench.leaderboard.protocols import protocol_sections
from bench.leaderboard.rows import group_records
from bench.leaderboard.transfer import TransferMatrix, main_records, transfer_matrices
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
    all_pairs: bool = False,
    cache: AnalysisCache | None = None,
) -> list[Analysis]:
    """One :class:`Analysis` per table of ``records`` (a stored JSON dict is read as a :class:`Record`);
    ``equivalence_margin``: the TOST margin against each column's best (None: no equivalence claim);
    ``all_pairs``: also test every pair of rows (:attr:`Analysis.pairs`); ``cache``: read back and
    store each table's analysis there (:class:`~bench.leaderboard.cache.AnalysisCache`)."""
    options = AnalysisOptions(
        tuple(metrics) if metrics is not None else None, seed, n_resamples, equivalence_margin, all_pairs
    )
    return _analyse(records, options, cache, keys=cache is not None)[0]


def _analyse(
    records: Iterable[Record | Mapping[str, Any]],
    options: AnalysisOptions,
    cache: AnalysisCache | None,
    *,
    keys: bool,
) -> tuple[list[Analysis], list[str]]:
    """The analyses of ``records``' tables and, with ``keys``, their cache keys."""
    typed = [r if isinstance(r, Record) else Record.from_dict(r) for r in records]
    refs = load_references(typed)  # constant baselines of every table serve their dataset's rows
    analyses, made, digests = [], [], {}
    for table in group_records(main_records(typed)):  # external tests: in the transfer matrices
        key = (
            table_key(table, options, refs, code=cache.code if cache else None, digests=digests)
            if keys
            else ""
        )
        a = cache.load(table, key) if cache is not None else None
        if a is None:
            a = analyse(table, **options.kwargs(), references=refs)
            if cache is not None:
                cache.store(table, key, a)
        analyses.append(a)
        made.append(key)
    return analyses, made


def render_analyses(
    analyses: Sequence[Analysis],
    fmt: str = "md",
    *,
    links_base: str | None = None,
    problems: Sequence[tuple[Path, str]] = (),
    superseded: Sequence[Superseded] = (),
    results_name: str | None = None,
    transfer: Sequence[TransferMatrix] = (),
) -> str:
    """Render analysed tables as ``md``, ``csv``, ``json`` or ``latex``; ``results_name``: how the
    Markdown header names the results folder (None: it names none); ``transfer``: the "trained on A
    → tested on B" matrices (:func:`~bench.leaderboard.transfer.transfer_matrices`; Markdown only)."""
    _check_format(fmt)
    if fmt != "md":
        return render_export(analyses, fmt, problems=problems)
    return render_markdown(
        analyses,
        links_base=links_base,
        problems=problems,
        superseded=superseded,
        results_name=results_name,
        transfer=transfer,
    )


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
    all_pairs: bool = False,
) -> str:
    """The leaderboard of ``records`` as text in ``fmt`` (nothing cached).

    With ``results_dir`` and ``plots``, the PNGs are rendered under ``<results_dir>/plots/`` (by
    ``workers`` processes) and the Markdown links to them (relative to ``links_base``, default
    ``<results_dir>/plots``). ``all_pairs``: also test every pair of rows (the significance maps).
    """
    _check_format(fmt)
    records = [r if isinstance(r, Record) else Record.from_dict(r) for r in records]
    analyses = analyse_records(
        records,
        metrics=metrics,
        seed=seed,
        n_resamples=n_resamples,
        equivalence_margin=equivalence_margin,
        all_pairs=all_pairs,
    )
    if results_dir is not None and plots:
        render_plots(analyses, Path(results_dir), workers=workers)
        if links_base is None:
            links_base = str(Path(results_dir) / "plots")
    gone = superseded(Path(results_dir)) if results_dir is not None else []
    return render_analyses(
        analyses,
        fmt,
        links_base=links_base if plots else None,
        problems=problems,
        superseded=gone,
        transfer=transfer_matrices(records),
    )


def write_leaderboard(
    results: Path,
    out: Path,
    *,
    fmt: str = "md",
    plots: bool | None = None,
    report: bool | None = None,
    metrics: Sequence[str] | None = None,
    workers: int = 1,
    equivalence_margin: float | None = None,
    all_pairs: bool = False,
    cache: bool = True,
    results_name: str | None = None,
) -> Path:
    """Render the records under ``results`` into ``out`` (atomically), plus the figures and the HTML
    report when asked or due.

    Each table's analysis is read back from ``<results>/.cache/leaderboard/`` when its records,
    the options and the code are those it was computed from, else computed and stored
    (:mod:`bench.leaderboard.cache`).

    Args:
        fmt: ``md``, ``csv``, ``json`` or ``latex``; only that file is written.
        plots: draw the figures under ``<results>/plots/``. None (auto): for ``md``, only when the
            analyses differ from those they were last drawn from (the stamp
            ``<results>/plots/.drawn.json``) or a figure is missing; never for the other formats.
            The Markdown links the figures when they are drawn or up to date (never with False).
        report: write ``<results>/report.html``; None (auto): as ``plots``, for ``md`` only.
        workers: processes drawing the figures; 1 draws them in this process.
        equivalence_margin: TOST margin against each column's best (``--equivalence-margin``).
        all_pairs: also test every pair of rows (``--all-pairs``: the significance maps and the
            JSON ``pairs``); quadratic in rows, so off by default.
        cache: read and write the analysis cache (False: compute every table, store nothing).
        results_name: how the headers of the Markdown and the report name the results folder
            (``results``; None: they name none).

    Raises:
        ValueError: when ``results`` holds no record (``out`` is left untouched) or ``fmt`` is unknown.
    """
    results, out = Path(results), Path(out)
    _check_format(fmt)
    records, problems = load_records(results) if results.is_dir() else ([], [])
    if not records:
        raise UserError(f"{results}: no run record found (`segbench run` writes them)")
    shown = [(p.relative_to(results) if p.is_relative_to(results) else p, why) for p, why in problems]
    options = AnalysisOptions(
        tuple(metrics) if metrics is not None else None, 0, stats.N_RESAMPLES, equivalence_margin, all_pairs
    )
    store = AnalysisCache.of(results) if cache else None
    analyses, keys = _analyse(records, options, store, keys=True)
    links_base = None
    linked = _figures(analyses, results, set_digest(keys), fmt, plots, report, shown, workers, results_name)
    if linked:
        links_base = Path(os.path.relpath((results / "plots").resolve(), out.parent.resolve())).as_posix()
    text = render_analyses(
        analyses,
        fmt,
        links_base=links_base,
        problems=shown,
        superseded=superseded(results),
        results_name=results_name,
        transfer=transfer_matrices(records),
    )
    if fmt == "md":
        extra = protocol_sections(results, out)
        if extra:
            text = text.rstrip() + "\n\n" + "\n".join(extra).rstrip() + "\n"
    write_text_atomic(out, text)
    return out


def _figures(
    analyses: list[Analysis],
    results: Path,
    digest: str,
    fmt: str,
    plots: bool | None,
    report: bool | None,
    problems: Sequence[tuple[Path, str]],
    workers: int,
    results_name: str | None = None,
) -> bool:
    """Draw the figures and write the report when asked (True) or due (None: ``md`` and the stamp
    differs or a file is missing); returns whether the Markdown links the figures (drawn now or up
    to date, and not ``plots=False``)."""
    stamp = DrawnStamp.read(results)
    current = stamp.plots == digest and plots_present(analyses, results)
    draw = plots if plots is not None else (fmt == "md" and not current)
    if draw:
        render_plots(analyses, results, workers=workers)
        remove_stale_plots(results, {a.table.slug for a in analyses})
        stamp.plots, stamp.plot_notes = digest, {a.table.slug: dict(a.plot_notes) for a in analyses}
    elif current:  # up to date: what the drawing could not show still goes under each table
        for a in analyses:
            a.plot_notes.update(stamp.plot_notes.get(a.table.slug, {}))
    linked = bool(draw or (plots is not False and current))
    report_id = set_digest(
        [digest, f"figures {linked}", f"name {results_name}", *(f"{p}: {why}" for p, why in problems)]
    )
    due = stamp.report != report_id or not (results / "report.html").is_file()
    stamped = stamp.report
    if report if report is not None else (fmt == "md" and due):
        write_report(analyses, results, problems=problems, plots=linked, results_name=results_name)
        stamp.report = report_id
    if draw or stamp.report != stamped:
        stamp.write(results)
    return linked
