"""The Markdown leaderboard (``leaderboard.md``): one section per analysed table.

Each section has the table (``#``: the rank on the primary metric, one ``mean [lo, hi]`` cell per
ranking metric, params, budget, seeds, train time, notes), the sentence that says what ``#`` is, its
legend, the ranking-stability table, the pairs within
training noise, the links to the figures and each row's provenance. It formats an
:class:`~bench.leaderboard.analysis.Analysis` through :mod:`bench.leaderboard.format`; nothing here
computes a statistic or reads a record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from bench.leaderboard import stats
from bench.leaderboard.analysis import Analysis, Row
from bench.leaderboard.convergence import convergence_sentence, early_training_line
from bench.leaderboard.format import (
    ALL_PAIRS_OFF,
    LEGEND,
    SEED_SHARE_TEXT,
    fmt_cell,
    fmt_diff,
    fmt_params,
    fmt_spread,
    has_all_pairs,
    rank_sentence,
    rank_text,
    row_title,
    settings_text,
    stability_of,
    threads_text,
)
from bench.leaderboard.published import published_sentence
from bench.leaderboard.schemes import scheme_sentence
from bench.leaderboard.transfer import TransferMatrix, render_transfer_md
from bench.metrics.registry import metric_info
from bench.records.supersede import Superseded


def render_markdown(
    analyses: Sequence[Analysis],
    *,
    links_base: str | None = None,
    problems: Sequence[tuple[Path, str]] = (),
    superseded: Sequence[Superseded] = (),
    results_name: str | None = None,
    transfer: Sequence[TransferMatrix] = (),
) -> str:
    """The whole Markdown document; figure links relative to ``links_base`` (none when ``None``);
    ``superseded``: the replaced records of the results folder (listed with their reason);
    ``results_name``: how the header names the results folder the records came from (``None``: the
    header names no folder); ``transfer``: the "trained on A → tested on B" matrices, after the
    tables (:mod:`bench.leaderboard.transfer`)."""
    parts = _header(results_name)
    if not analyses:
        parts.append("No run records yet: `segbench run` writes them.\n")
    for a in analyses:
        links = plot_links(a, links_base) if links_base is not None else None
        parts += [render_table_md(a, links), ""]
    parts += render_transfer_md(transfer)
    parts += _problems_md(problems)
    parts += superseded_md(superseded)
    return "\n".join(parts).rstrip() + "\n"


def plot_links(a: Analysis, base: str) -> list[tuple[str, str]]:
    """``(title, relative path)`` of the figures of this table under ``base``."""
    return [(title, f"{base}/{a.table.slug}/{name}") for title, name in a.plot_names()]


def render_table_md(a: Analysis, links: list[tuple[str, str]] | None = None) -> str:
    """Markdown section of one table."""
    t = a.table
    head = ["#", "model", "loss", *[f"{m} {metric_info(m).arrow}" for m in a.rank_metrics]]
    if a.rank_metrics:
        m0 = a.rank_metrics[0]
        head += [f"Δ best {m0} [95%]", f"sd seed / {'group' if a.groups else 'case'} {m0}"]
    head += ["params", "budget", "seeds", "train s", "notes"]
    lines = [f"## {t.label}", ""]
    if len(t.sweeps) > 1:
        lines += [f"Sweeps: {', '.join(t.sweeps)}.", ""]
    if t.settings:
        lines += [f"Settings: {settings_text(t.settings)}", ""]
    early = early_training_line(a.convergence, t.settings.get("budget"))
    if early:
        lines += [early, ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in a.ranked:
        lines.append(_table_row(a, row, rank_text(a, row)))
    for row in a.unranked:
        lines.append(_table_row(a, row, "failed"))
    for row in a.human:
        lines.append(_table_row(a, row, "human"))
    lines += ["", rank_sentence(a), "", a.legend_text()]
    converged = convergence_sentence(a.convergence)
    if converged:
        lines += ["", converged]
    published = published_sentence(a)
    if published:
        lines += ["", published]
    schemes = scheme_sentence(a)
    if schemes:
        lines += ["", schemes]
    if a.stability is not None:
        lines += ["", *_ranking_md(a)]
    noise = (
        _noise_md(a)
        if has_all_pairs(a)
        else f"Significance map, pairs within training noise: {ALL_PAIRS_OFF}."
    )
    if noise and len(a.ranked) > 1:
        lines += ["", noise]
    if links:
        lines += ["", "Plots: " + " · ".join(f"[{title}]({path})" for title, path in links)]
        if a.plot_notes:
            notes = "; ".join(f"{k}: {v}" for k, v in a.plot_notes.items())
            lines += ["", f"What the figures leave out: {notes}."]
    lines += ["", "Provenance:", ""]
    lines += [
        f"- **{_md_escape(r.label)} / {_md_escape(r.loss)}**: {a.info[r.key].provenance}" for r in a.rows
    ]
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _table_row(a: Analysis, row: Row, rank: str) -> str:
    cells = [rank, _md_escape(row.label), _md_escape(row.loss)]
    for m in a.rank_metrics:
        s = a.row_stats.get(row.key, {}).get(m)
        if s is None:
            cells.append("–")
            continue
        c = fmt_cell(s)
        if a.is_best(m, row.key):
            c = f"**{c}**"
        mark = a.mark(m, row.key)
        cells.append(f"{c} {mark}" if mark else c)
    if a.rank_metrics:
        m0 = a.rank_metrics[0]
        comp = a.vs_best.get(m0, {}).get(row.key)
        s0 = a.row_stats.get(row.key, {}).get(m0)
        best = "best" if a.is_best(m0, row.key) else "–"
        cells.append(f"{fmt_diff(comp.diff)} {comp.mark}" if comp is not None else best)
        cells.append(fmt_spread(s0.ci) if s0 is not None else "–")
    info = a.info[row.key]
    threads, gpus = a.train_compute()
    secs = info.train_seconds_text
    if info.train_seconds is not None and len(threads) + len(gpus) > 1:
        secs += f" ({threads_text(info.cpu_threads, info.gpus)})"
    cells += [
        fmt_params(info.params, info.preset),
        info.budget,
        info.seeds if row.kind == "train" else "–",
        secs,
        _md_escape("; ".join(a.notes.get(row.key, []))),
    ]
    return "| " + " | ".join(cells) + " |"


def superseded_md(superseded: Sequence[Superseded]) -> list[str]:
    """The provenance of replaced records: run id, when, by which commit, why, where it is kept."""
    if not superseded:
        return []
    lines = [
        "## Superseded records",
        "",
        "Records replaced by a re-run (`segbench run --force`), kept as they were:",
        "",
    ]
    for s in superseded:
        lines.append(
            f"- `{s.run_id}`: superseded {s.superseded_at or '?'} by commit {(s.by_commit or '?')[:8]}; "
            f"reason: {_md_escape(s.reason or 'not given')}; kept at `{s.path}`"
        )
    return lines + [""]


def _noise_md(a: Analysis) -> str:
    """The noise flags for the markdown table, kept short: per metric, the rows whose difference
    from that metric's best row is below the seed spread; the full pair list is in the exports."""
    parts, total = [], 0
    for m in a.rank_metrics:
        pairs = [p for p in a.pairs.get(m, []) if p.within_noise]
        total += len(pairs)
        best = a.best.get(m)
        if best is None and a.ranked:
            best = a.ranked[0].key
        near = sorted(
            {row_title(a.ranked_row(p.b if p.a == best else p.a)) for p in pairs if best in (p.a, p.b)}
        )
        if near:
            parts.append(f"{m}: {', '.join(near)} vs the best ({row_title(a.ranked_row(best))})")
    if not total:
        return ""
    return (
        f"Within training noise (difference below the seed spread; {total} pair(s) in all, listed in "
        "the json export and the HTML report): " + "; ".join(parts) + "."
    )


def _ranking_md(a: Analysis) -> list[str]:
    st = a.stability
    assert st is not None
    m0 = a.rank_metrics[0]
    head = ["model", "loss", "# combined", f"# {m0} (mean)", f"# {m0} (cases)", "P(#1)", "rank 95%"]
    head.append(f"seed share of {m0} variance")
    lines = [
        f"Ranking stability of {stability_of(a)} ({st.n_resamples} paired bootstrap resamples of cases and "
        f"seeds, seed {st.seed}): "
        "Kendall τ to the full ranking median {:.2f} [{:.2f}, {:.2f}].".format(*stats.tau_summary(st.tau))
        + " "
        + SEED_SHARE_TEXT.format(m=m0),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for i, row in enumerate(a.ranked):
        share = a.row_stats[row.key][m0].seed_share
        cells = [
            _md_escape(row.label),
            _md_escape(row.loss),
            _rank(a.combined.get(row.key)),
            f"{a.agg_rank[m0][row.key]:.0f}",
            f"{a.case_rank[m0][row.key]:.2f}",
            f"{st.p_first[i]:.2f}",
            f"{st.lo[i]:.0f}–{st.hi[i]:.0f}",
            "–" if math.isnan(share) else f"{100 * share:.0f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _rank(v: float | None) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.0f}"


def _header(results_name: str | None) -> list[str]:
    where = f"the run records under `{results_name.rstrip('/')}/`" if results_name else "run records"
    return [
        "# segbench leaderboard",
        "",
        f"Generated by `segbench leaderboard` from {where}; do not edit by hand.",
        "",
        LEGEND,
        "",
    ]


def _problems_md(problems: Sequence[tuple[Path, str]]) -> list[str]:
    if not problems:
        return []
    return ["## Records left out", ""] + [f"- `{p}` — {reason}" for p, reason in problems] + [""]
