"""Leaderboard exports (CSV, JSON, LaTeX) and the static HTML report (``<results>/report.html``).

Everything here formats a :class:`bench.leaderboard.Analysis`; no statistic is computed here. The
HTML report needs no server and no network: one file with inline CSS and JavaScript (sortable
tables) that links the PNGs under ``<results>/plots/`` by relative paths, so it opens from disk.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.metrics.registry import metric_info
from bench.stats import tau_summary
from bench.store import write_text_atomic

if TYPE_CHECKING:
    from bench.leaderboard import Analysis, Row


def _role(a: Analysis, row: Row) -> str:
    return "ranked" if row in a.ranked else ("human" if row.human else "failed")


def _rows(a: Analysis) -> list[Row]:
    return a.ranked + a.unranked + a.human


def _num(v: Any) -> Any:
    """Floats as JSON-able values (NaN and inf stay floats; numpy scalars become Python)."""
    return float(v) if hasattr(v, "__float__") and not isinstance(v, (int, bool)) else v


def analysis_dict(a: Analysis) -> dict[str, Any]:
    """A plain dict of one table's analysis (the JSON export)."""
    from bench.leaderboard import budget, provenance, runs_text

    idx = {r.key: i for i, r in enumerate(a.ranked)}
    rows = []
    for row in _rows(a):
        metrics = {}
        for m, s in a.row_stats.get(row.key, {}).items():
            entry = {k: _num(v) for k, v in s.reduction.items()}
            entry.update(
                ci_lo=s.ci.lo,
                ci_hi=s.ci.hi,
                ci_levels=s.ci.levels,
                n_runs=s.n_runs,
                seed_sd=s.seed_sd,
                seed_share=s.seed_share,
                case_share=s.case_share,
            )
            if m in a.agg_rank and row.key in a.agg_rank[m]:
                entry.update(
                    rank_of_mean=_num(a.agg_rank[m][row.key]),
                    mean_rank_over_cases=_num(a.case_rank[m][row.key]),
                )
                entry.update(best=a.is_best(m, row.key), tied_with_best=row.key in a.tied_best.get(m, set()))
            metrics[m] = entry
        item: dict[str, Any] = {
            "label": row.label,
            "loss": row.loss,
            "kind": row.kind,
            "role": _role(a, row),
            "combined_rank": _num(a.combined.get(row.key)),
            "budget": budget(row),
            "seeds": runs_text(row, "seed"),
            "folds": runs_text(row, "fold"),
            "params": next((r.get("params") for r in row.done if r.get("params")), None),
            "records": [r.get("run_id") for r in row.records],
            "notes": a.notes.get(row.key, []),
            "provenance": provenance(row),
            "row_key": row.key,
            "metrics": metrics,
        }
        if a.stability is not None and row.key in idx:
            i = idx[row.key]
            st = a.stability
            item["stability"] = {
                "p_first": _num(st.p_first[i]),
                "mean_rank": _num(st.mean_rank[i]),
                "rank_lo": _num(st.lo[i]),
                "rank_hi": _num(st.hi[i]),
            }
        rows.append(item)
    label = {r.key: r.label + ("" if r.loss == "–" else f" / {r.loss}") for r in a.ranked}
    pairs = {
        m: [
            {
                "a": label[p.a],
                "b": label[p.b],
                "diff": p.paired.diff,
                "ci_lo": p.paired.lo,
                "ci_hi": p.paired.hi,
                "p": p.paired.p,
                "p_holm": p.p_holm,
                "significant": p.significant,
                "n": p.paired.n,
                "n_nan": p.paired.n_nan,
                "noise_sd": p.noise_sd,
                "within_noise": p.within_noise,
            }
            for p in lst
        ]
        for m, lst in a.pairs.items()
    }
    out = {
        "table": a.table.label,
        "dataset": a.table.dataset,
        "settings": a.table.settings,
        "rank_metrics": a.rank_metrics,
        "cases": a.cases,
        "bootstrap": {"n_resamples": a.n_resamples, "seed": a.seed, "confidence": 0.95},
        "rows": rows,
        "pairs": pairs,
        "plot_notes": a.plot_notes,
    }
    if a.stability is not None:
        med, lo, hi = tau_summary(a.stability.tau)
        out["kendall_tau"] = {"median": med, "lo": lo, "hi": hi}
    return out


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
    "best",
    "tied_with_best",
    "seeds",
    "folds",
    "budget",
    "params",
    "records",
]


def _csv(analyses: Sequence[Analysis]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for a in analyses:
        d = analysis_dict(a)
        for row in d["rows"]:
            base = {
                k: row.get(k)
                for k in ("loss", "kind", "role", "combined_rank", "seeds", "folds", "budget", "params")
            }
            base.update(table=d["table"], row=row["label"], records=" ".join(map(str, row["records"])))
            if not row["metrics"]:
                w.writerow(base)
            for m, e in row["metrics"].items():
                w.writerow({**base, "metric": m, **e})
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
    from bench.leaderboard import fmt_num

    return fmt_num(v, ref).replace("∞", r"\infty").replace("–", "--")


def _latex(analyses: Sequence[Analysis]) -> str:
    out = ["% segbench leaderboard; needs \\usepackage{booktabs}", ""]
    for a in analyses:
        arrows = {True: "$\\uparrow$", False: "$\\downarrow$"}
        cols = ["\\#", "model", "loss"] + [
            f"{latex_escape(m)} {arrows[metric_info(m).higher_is_better]}" for m in a.rank_metrics
        ]
        out += [
            "\\begin{table}[t]",
            "\\centering",
            "\\small",
            f"\\begin{{tabular}}{{rll{'c' * len(a.rank_metrics)}}}",
        ]
        out += ["\\toprule", " & ".join(cols) + " \\\\", "\\midrule"]
        for row in _rows(a):
            rank = (
                f"{a.combined[row.key]:.0f}"
                if row.key in a.combined
                else ("human" if row.human else "failed")
            )
            cells = [rank, latex_escape(row.label), latex_escape(row.loss)]
            for m in a.rank_metrics:
                s = a.row_stats.get(row.key, {}).get(m)
                if s is None or s.reduction["n"] == 0:
                    cells.append("--")
                    continue
                mean = s.reduction["mean"]
                c = f"${_latex_num(mean)}$"
                if a.is_best(m, row.key):
                    c = f"\\textbf{{{_latex_num(mean)}}}"
                ci = f" {{\\scriptsize $[{_latex_num(s.ci.lo, mean)}, {_latex_num(s.ci.hi, mean)}]$}}"
                mark = "$^{\\approx}$" if row.key in a.tied_best.get(m, set()) else ""
                cells.append(c + mark + ci)
            out.append(" & ".join(cells) + " \\\\")
            if row.human and row is a.human[0] and out[-2] != "\\midrule":
                out.insert(len(out) - 1, "\\midrule")
        caption = (
            f"{latex_escape(a.table.label)}: mean over test cases "
            f"[95\\% bootstrap CI, {a.n_resamples} resamples, "
            f"seed {a.seed}]. Bold: best; $\\approx$: not significantly different from the best "
            "(Wilcoxon signed-rank, Holm-corrected, $\\alpha = 0.05$)."
        )
        out += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", "\\end{table}", ""]
    return "\n".join(out)


def render_export(
    analyses: Sequence[Analysis], fmt: str, *, problems: Sequence[tuple[Path, str]] = ()
) -> str:
    """``csv``, ``json`` or ``latex`` text of the analysed tables."""
    if fmt == "json":
        data = {
            "tables": [analysis_dict(a) for a in analyses],
            "records_left_out": [[str(p), r] for p, r in problems],
        }
        return json.dumps(data, indent=1, default=_num) + "\n"
    if fmt == "csv":
        return _csv(analyses)
    if fmt == "latex":
        return _latex(analyses)
    raise ValueError(f"--format: unknown format {fmt!r}")


# ---- HTML -------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1200px;
  color:#222;padding:0 12px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px} .scroll{overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;user-select:none}
th.sorted-asc::after{content:" ▲"} th.sorted-desc::after{content:" ▼"}
tr.human td{font-style:italic;background:#fafae8} tr.failed td{color:#a33}
td.best{font-weight:bold} .legend,.small{font-size:12px;color:#555;max-width:1100px}
img{max-width:100%;border:1px solid #eee;margin:4px 0} details{margin:4px 0;font-size:12px}
code{font-size:11px} .status{font-size:11px;color:#888}
"""

_HEAD_JS = """
window.segbenchErrors=0;
window.addEventListener('error',function(){window.segbenchErrors++;},true);
(function(){var e=console.error;
  console.error=function(){window.segbenchErrors++;return e.apply(console,arguments);};})();
"""

_JS = """
(function(){
  function key(td){var v=td.getAttribute('data-sort');if(v===null)v=td.textContent.trim();
    var n=parseFloat(v);return isNaN(n)?v.toLowerCase():n;}
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      var asc=!th.classList.contains('sorted-asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc?'sorted-asc':'sorted-desc');
      rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
        if(typeof x!==typeof y){x=String(x);y=String(y);}return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});});});});
  window.addEventListener('load',function(){
    var imgs=document.images,ok=0;
    for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0)ok++;}
    var b=document.body;b.setAttribute('data-images-total',imgs.length);
    b.setAttribute('data-images-loaded',ok);b.setAttribute('data-errors',window.segbenchErrors);
    b.setAttribute('data-ready','1');
    var s=document.getElementById('status');if(s)s.textContent=ok+' of '+imgs.length+' images loaded';
  });
})();
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _sort_value(v: float) -> str:
    if v is None or math.isnan(v):
        return ""
    return "1e308" if v == math.inf else ("-1e308" if v == -math.inf else repr(float(v)))


def _html_table(a: Analysis) -> list[str]:
    from bench.leaderboard import budget, fmt_cell, fmt_num, fmt_params, runs_text

    metrics = a.rank_metrics + [m for m in a.metrics if m not in a.rank_metrics]
    head = ["#", "model", "loss", *[f"{m} {metric_info(m).arrow}" if _known(m) else m for m in metrics]]
    head += ["params", "budget", "seeds", "folds", "train s", "notes"]
    out = [
        '<div class="scroll"><table class="sortable"><thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    for row in _rows(a):
        role = _role(a, row)
        rank = a.combined.get(row.key)
        shown = f"{rank:.0f}" if rank is not None else role
        cells = [f'<td data-sort="{_sort_value(rank) if rank is not None else 1e9}">{_e(shown)}</td>']
        cells += [f"<td>{_e(row.label)}</td>", f"<td>{_e(row.loss)}</td>"]
        for m in metrics:
            s = a.row_stats.get(row.key, {}).get(m)
            if s is None:
                cells.append('<td data-sort="">–</td>')
                continue
            cls = ' class="best"' if a.is_best(m, row.key) else ""
            mark = " ≈" if row.key in a.tied_best.get(m, set()) else ""
            r = s.reduction
            tip = (
                f"median {fmt_num(r['median'])}, std {fmt_num(r['std'])}, n {r['n']}, NaN {r['n_nan']}, "
                f"inf {r['n_inf']}, runs {s.n_runs}"
            )
            sort = _sort_value(r["mean"])
            cells.append(f'<td{cls} data-sort="{sort}" title="{_e(tip)}">{_e(fmt_cell(s) + mark)}</td>')
        params = next((r.get("params") for r in row.done if r.get("params")), None)
        secs = [r["train_seconds"] for r in row.done if isinstance(r.get("train_seconds"), (int, float))]
        cells += [
            f'<td data-sort="{params or 0}">{_e(fmt_params(params))}</td>',
            f"<td>{_e(budget(row))}</td>",
            f"<td>{_e(runs_text(row, 'seed'))}</td>",
            f"<td>{_e(runs_text(row, 'fold'))}</td>",
            f"<td>{_e(f'{sum(secs) / len(secs):.0f}' if secs else '–')}</td>",
            f"<td>{_e('; '.join(a.notes.get(row.key, [])))}</td>",
        ]
        out.append(f'<tr class="{role}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _known(m: str) -> bool:
    from bench.metrics.registry import is_metric

    return is_metric(m)


def _stability_html(a: Analysis) -> list[str]:
    if a.stability is None:
        return []
    st, m0 = a.stability, a.rank_metrics[0]
    head = [
        "model",
        "loss",
        "# combined",
        f"# {m0} (mean)",
        f"# {m0} (cases)",
        "P(#1)",
        "mean rank",
        "rank 95%",
    ]
    out = [
        '<div class="scroll"><table class="sortable"><thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    for i, row in enumerate(a.ranked):
        vals = [
            row.label,
            row.loss,
            f"{st.full[i]:.0f}",
            f"{a.agg_rank[m0][row.key]:.0f}",
            f"{a.case_rank[m0][row.key]:.2f}",
            f"{st.p_first[i]:.2f}",
            f"{st.mean_rank[i]:.2f}",
            f"{st.lo[i]:.0f}–{st.hi[i]:.0f}",
        ]
        out.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in vals) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def render_html(
    analyses: Sequence[Analysis], *, problems: Sequence[tuple[Path, str]] = (), plots: bool = True
) -> str:
    """The report as one HTML document (image paths relative to the results folder)."""
    from bench import plots as _plots
    from bench.leaderboard import LEGEND, legend, noise_pairs, provenance, settings_text

    body = ["<h1>segbench leaderboard</h1>", '<p class="status" id="status">loading…</p>']
    body.append(f'<p class="legend">{_e(LEGEND)}</p>')
    if not analyses:
        body.append("<p>No run records yet: <code>segbench run</code> writes them.</p>")
    for a in analyses:
        body.append(f"<h2>{_e(a.table.label)}</h2>")
        if a.table.settings:
            body.append("<p class='small'>Settings: " + _e(settings_text(a.table.settings)) + "</p>")
        body += _html_table(a)
        body.append(f'<p class="legend">{_e(legend(a))}</p>')
        noise = noise_pairs(a)
        if noise:
            body.append(f"<p class='small'>Within training noise: {_e('; '.join(noise))}.</p>")
        if a.stability is not None:
            body.append(
                f"<h3>Ranking stability ({a.stability.n_resamples} resamples, seed {a.stability.seed})</h3>"
            )
            body += _stability_html(a)
        if plots:
            for title, name in _plots.plot_names(a):
                src = f"plots/{a.table.slug}/{name}"
                body.append(f'<h3>{_e(title)}</h3><img src="{_e(src)}" alt="{_e(title)}" loading="eager">')
        if a.plot_notes:
            body.append(
                "<ul class='small'>"
                + "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in a.plot_notes.items())
                + "</ul>"
            )
        body.append("<h3>Provenance</h3>")
        for row in _rows(a):
            body.append(
                f"<details><summary>{_e(row.label)} / {_e(row.loss)}</summary>"
                f"<code>{_e(provenance(row))}</code></details>"
            )
    if problems:
        body.append(
            "<h2>Records left out</h2><ul>"
            + "".join(f"<li><code>{_e(p)}</code> — {_e(r)}</li>" for p, r in problems)
            + "</ul>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>segbench leaderboard</title>'
        f"<style>{_CSS}</style><script>{_HEAD_JS}</script></head><body>\n"
        + "\n".join(body)
        + f"\n<script>{_JS}</script>\n</body></html>\n"
    )


def write_report(
    analyses: Sequence[Analysis],
    results: Path,
    *,
    problems: Sequence[tuple[Path, str]] = (),
    plots: bool = True,
) -> Path:
    """Write ``<results>/report.html`` (atomically) and return its path."""
    path = Path(results) / "report.html"
    write_text_atomic(path, render_html(analyses, problems=problems, plots=plots))
    return path
