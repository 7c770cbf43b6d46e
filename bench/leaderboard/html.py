"""The static HTML report (``<results>/report.html``): every table, its figures and provenance.

One file with inline CSS and JavaScript (sortable tables) that needs no server and no network and
links the PNGs under ``<results>/plots/`` by relative paths, so it opens from disk. It formats an
:class:`~bench.leaderboard.analysis.Analysis` through :mod:`bench.leaderboard.format`; nothing here
computes a statistic or reads a record.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.leaderboard.analysis import Analysis
from bench.leaderboard.format import (
    LEGEND,
    fmt_cell,
    fmt_num,
    fmt_params,
    row_title,
    settings_text,
)
from bench.metrics.registry import is_metric, metric_info
from bench.records.store import write_text_atomic

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
    metrics = a.rank_metrics + [m for m in a.metrics if m not in a.rank_metrics]
    head = ["#", "model", "loss", *[f"{m} {metric_info(m).arrow}" if is_metric(m) else m for m in metrics]]
    head += ["params", "budget", "seeds", "folds", "train s", "notes"]
    out = [
        '<div class="scroll"><table class="sortable"><thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    for row in a.rows:
        role = a.role(row)
        rank = a.combined.get(row.key)
        shown = f"{rank:.0f}" if rank is not None else role
        cells = [f'<td data-sort="{_sort_value(rank) if rank is not None else 1e9}">{_e(shown)}</td>']
        cells += [f"<td>{_e(row.label)}</td>", f"<td>{_e(row.loss)}</td>"]
        cells += [_metric_cell(a, row.key, m) for m in metrics]
        info = a.info[row.key]
        secs = info.train_seconds
        cells += [
            f'<td data-sort="{info.params or 0}">{_e(fmt_params(info.params))}</td>',
            f"<td>{_e(info.budget)}</td>",
            f"<td>{_e(info.seeds)}</td>",
            f"<td>{_e(info.folds)}</td>",
            f"<td>{_e(f'{secs:.0f}' if secs is not None else '–')}</td>",
            f"<td>{_e('; '.join(a.notes.get(row.key, [])))}</td>",
        ]
        out.append(f'<tr class="{role}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _metric_cell(a: Analysis, key: str, m: str) -> str:
    s = a.row_stats.get(key, {}).get(m)
    if s is None:
        return '<td data-sort="">–</td>'
    cls = ' class="best"' if a.is_best(m, key) else ""
    mark = f" {a.mark(m, key)}" if a.mark(m, key) else ""
    r = s.reduction
    tip = (
        f"median {fmt_num(r['median'])}, std {fmt_num(r['std'])}, n {r['n']}, NaN {r['n_nan']}, "
        f"inf {r['n_inf']}, runs {s.n_runs}"
    )
    return f'<td{cls} data-sort="{_sort_value(r["mean"])}" title="{_e(tip)}">{_e(fmt_cell(s) + mark)}</td>'


def _noise_pairs(a: Analysis) -> list[str]:
    """Pairs whose mean difference is below the seed spread, one line each."""
    return [
        f"{row_title(a.ranked_row(p.a))} vs {row_title(a.ranked_row(p.b))} "
        f"({m}: Δ {fmt_num(p.paired.diff)} < seed sd {fmt_num(p.noise_sd)})"
        for m in a.rank_metrics
        for p in a.pairs.get(m, [])
        if p.within_noise
    ]


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
    body = ["<h1>segbench leaderboard</h1>", '<p class="status" id="status">loading…</p>']
    body.append(f'<p class="legend">{_e(LEGEND)}</p>')
    if not analyses:
        body.append("<p>No run records yet: <code>segbench run</code> writes them.</p>")
    for a in analyses:
        body += _section(a, plots=plots)
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


def _section(a: Analysis, *, plots: bool) -> list[str]:
    """One table: its settings, the table, the legend, noise pairs, stability, figures, provenance."""
    body = [f"<h2>{_e(a.table.label)}</h2>"]
    if a.table.settings:
        body.append("<p class='small'>Settings: " + _e(settings_text(a.table.settings)) + "</p>")
    body += _html_table(a)
    body.append(f'<p class="legend">{_e(a.legend_text())}</p>')
    noise = _noise_pairs(a)
    if noise:
        body.append(f"<p class='small'>Within training noise: {_e('; '.join(noise))}.</p>")
    if a.stability is not None:
        body.append(
            f"<h3>Ranking stability ({a.stability.n_resamples} resamples, seed {a.stability.seed})</h3>"
        )
        body += _stability_html(a)
    if plots:
        for title, name in a.plot_names():
            src = f"plots/{a.table.slug}/{name}"
            body.append(f'<h3>{_e(title)}</h3><img src="{_e(src)}" alt="{_e(title)}" loading="eager">')
    if a.plot_notes:
        body.append(
            "<ul class='small'>"
            + "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in a.plot_notes.items())
            + "</ul>"
        )
    body.append("<h3>Provenance</h3>")
    for row in a.rows:
        body.append(
            f"<details><summary>{_e(row.label)} / {_e(row.loss)}</summary>"
            f"<code>{_e(a.info[row.key].provenance)}</code></details>"
        )
    return body


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
