"""Leaderboard exports: CSV, JSON and LaTeX text of the analysed tables.

The JSON export is :meth:`~bench.leaderboard.analysis.Analysis.to_dict` of every table; the CSV is
one line per (table, row, metric) of that same dict; the LaTeX is one ``booktabs`` table per
:class:`~bench.leaderboard.analysis.Analysis`, spelled through :mod:`bench.leaderboard.format`. No
statistic is computed and no record is read here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from bench.leaderboard.analysis import Analysis, plain
from bench.leaderboard.format import fmt_num, rank_sentence, rank_text
from bench.leaderboard.stats import ALPHA, ROW_STATISTICS
from bench.metrics.registry import metric_info

EXPORTS = ("csv", "json", "latex")

_CSV_COLUMNS = [
    "table",
    "row",
    "loss",
    "kind",
    "role",
    "combined_rank",
    "metric",
    "mean",
    "ci_lo",
    "ci_hi",
    "median",
    "std",
    "n",
    "n_nan",
    "n_inf",
    "n_runs",
    "seed_sd",
    "seed_share",
    "rank_of_mean",
    "mean_rank_over_cases",
    "ci_design",
    "interval_seed_sd",
    "interval_unit_sd",
    "best",
    "vs_best_diff",
    "vs_best_ci_lo",
    "vs_best_ci_hi",
    "vs_best_p_holm",
    "vs_best_min_p",
    "vs_best_mark",
    "seeds",
    "folds",
    "budget",
    "params",
    "preset",
    "records",
]
_CSV_ROW_FIELDS = ("loss", "kind", "role", "combined_rank", "seeds", "folds", "budget", "params", "preset")


def render_export(
    analyses: Sequence[Analysis], fmt: str, *, problems: Sequence[tuple[Path, str]] = ()
) -> str:
    """``csv``, ``json`` or ``latex`` text of the analysed tables."""
    if fmt == "json":
        return render_json(analyses, problems=problems)
    if fmt == "csv":
        return render_csv(analyses)
    if fmt == "latex":
        return render_latex(analyses)
    raise ValueError(f"--format: unknown format {fmt!r}")


def render_json(analyses: Sequence[Analysis], *, problems: Sequence[tuple[Path, str]] = ()) -> str:
    """Every table's :meth:`~bench.leaderboard.analysis.Analysis.to_dict` and the records left out."""
    data = {
        "tables": [a.to_dict() for a in analyses],
        "records_left_out": [[str(p), r] for p, r in problems],
    }
    return json.dumps(data, indent=1, default=plain) + "\n"


def render_csv(analyses: Sequence[Analysis]) -> str:
    """One line per (table, row, metric); a row without metric values gets one line of its own."""
    buf = io.StringIO()
    columns = [*_CSV_COLUMNS[:-5], *ROW_STATISTICS, *_CSV_COLUMNS[-5:]]  # registered statistics too
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for a in analyses:
        d = a.to_dict()
        for row in d["rows"]:
            base = {k: row.get(k) for k in _CSV_ROW_FIELDS}
            base.update(table=d["table"], row=row["label"], records=" ".join(map(str, row["records"])))
            if not row["metrics"]:
                w.writerow(base)
            for m, e in row["metrics"].items():
                vs = {f"vs_best_{k}": v for k, v in (e.get("vs_best") or {}).items()}
                w.writerow({**base, "metric": m, **e, **vs})
    return buf.getvalue()


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``_`` -> ``\\_``)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _latex_num(v: float, ref: float | None = None) -> str:
    return fmt_num(v, ref).replace("∞", r"\infty").replace("–", "--")


def render_latex(analyses: Sequence[Analysis]) -> str:
    """One ``booktabs`` table per analysed table: ``mean [lo, hi]``, the best bold, the marks."""
    out = ["% segbench leaderboard; needs \\usepackage{booktabs}", ""]
    for a in analyses:
        out += _latex_table(a)
    return "\n".join(out)


def _latex_table(a: Analysis) -> list[str]:
    arrows = {True: "$\\uparrow$", False: "$\\downarrow$"}
    cols = ["\\#", "model", "loss"]
    cols += [f"{latex_escape(m)} {arrows[metric_info(m).higher_is_better]}" for m in a.rank_metrics]
    out = [
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\begin{{tabular}}{{rll{'c' * len(a.rank_metrics)}}}",
    ]
    out += ["\\toprule", " & ".join(cols) + " \\\\", "\\midrule"]
    for row in a.rows:
        cells = [rank_text(a, row), latex_escape(row.label), latex_escape(row.loss)]
        for m in a.rank_metrics:
            s = a.row_stats.get(row.key, {}).get(m)
            if s is None or s.reduction["n"] == 0:
                cells.append("--")
                continue
            mean = s.reduction["mean"]
            c = f"\\textbf{{{_latex_num(mean)}}}" if a.is_best(m, row.key) else f"${_latex_num(mean)}$"
            ci = f" {{\\scriptsize $[{_latex_num(s.ci.lo, mean)}, {_latex_num(s.ci.hi, mean)}]$}}"
            mark = f"$^{{\\text{{{_latex_mark(a.mark(m, row.key))}}}}}$" if a.mark(m, row.key) else ""
            cells.append(c + mark + ci)
        out.append(" & ".join(cells) + " \\\\")
        if row.human and row is a.human[0] and out[-2] != "\\midrule":
            out.insert(len(out) - 1, "\\midrule")
    caption = (
        f"{latex_escape(a.table.label)}: mean [95\\% interval, crossed seed $\\times$ test-unit t "
        "interval]. Bold: best. Marks against the best (two-sided Wilcoxon signed-rank, Holm over the "
        f"comparisons with the best, $\\alpha = {ALPHA}$): * differs, ns not significant, $\\cdot$ n too "
        "small to test, $\\equiv$ equivalent within the margin, \\dag{} topology value of a row with "
        f"collapsed runs. {latex_escape(rank_sentence(a).replace('`', ''))}"
    )
    return out + ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", "\\end{table}", ""]


def _latex_mark(mark: str) -> str:
    """A cell's marks in LaTeX text mode."""
    return mark.replace("≡", "$\\equiv$").replace("·", "$\\cdot$").replace("†", "\\dag{}")
