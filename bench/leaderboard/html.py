"""The static HTML report (``<results>/report.html``): every table, its figures and provenance.

One file with inline CSS and JavaScript (sortable tables) that needs no server and no network and
links the PNGs under ``<results>/plots/`` by relative paths, so it opens from disk. Per analysed
table: a summary table (``#``, the row, the primary metric with its difference to the best, what
the row is), then one table per metric group (:func:`metric_group`: overlap, topology, distance,
calibration, from the metric registry), each with ``#``, the row and the primary metric again, so
that no table needs a horizontal scroller at 1400 px; long lists (pairs within training noise,
provenance) are collapsed behind their count. It formats an
:class:`~bench.leaderboard.analysis.Analysis` through :mod:`bench.leaderboard.format`; nothing here
computes a statistic or reads a record.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.leaderboard.analysis import Analysis, Row
from bench.leaderboard.format import (
    ALL_PAIRS_OFF,
    LEGEND,
    SEED_SHARE_TEXT,
    fmt_cell,
    fmt_diff,
    fmt_num,
    fmt_params,
    fmt_spread,
    has_all_pairs,
    primary_metric,
    rank_sentence,
    rank_text,
    row_title,
    settings_text,
    stability_of,
)
from bench.metrics.registry import is_metric, metric_info
from bench.records.explain_files import explain_panels
from bench.records.store import write_text_atomic

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1320px;
  color:#222;padding:0 12px}
table{border-collapse:collapse;margin:6px 0 14px;font-size:13px} .scroll{overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;white-space:nowrap;vertical-align:top}
th{background:#f3f3f3;cursor:pointer;user-select:none;white-space:normal;min-width:2em}
th.sorted-asc::after{content:" ▲"} th.sorted-desc::after{content:" ▼"}
td.name{white-space:normal;min-width:11em;max-width:18em}
td.notes{white-space:normal;min-width:12em;max-width:26em}
td.metric{white-space:normal;min-width:5.5em} .ci{font-size:11px;color:#555;white-space:nowrap}
tr.human td{font-style:italic;background:#fafae8} tr.failed td{color:#a33}
td.best{font-weight:bold} .legend,.small{font-size:12px;color:#555;max-width:1100px}
p.rank{font-size:13px;margin:4px 0} h4.group{margin:10px 0 0;font-size:14px}
figure{margin:8px 0} figure h3{margin:4px 0}
img{max-width:100%;border:1px solid #eee;margin:4px 0} details{margin:4px 0;font-size:12px}
code{font-size:11px} .status{font-size:11px;color:#888}
@media print{.scroll{overflow:visible} body{max-width:none} section.table{break-before:page}}
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


def _text(text: str) -> str:
    """Escaped text with its Markdown code spans (`` `x` ``) as ``<code>``."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _sort_value(v: float) -> str:
    if v is None or math.isnan(v):
        return ""
    return "1e308" if v == math.inf else ("-1e308" if v == -math.inf else repr(float(v)))


_GROUP_OF_MODULE = {
    "overlap": "overlap",
    "cldice": "topology",
    "betti": "topology",
    "surface": "distance",
    "calibration": "calibration",
}
"""The report's metric groups, by the catalog module (``bench/metrics/catalog/<module>.py``) that
registers a metric; a metric from another module forms a group named after its module."""
GROUP_COLUMNS = 6
"""At most this many metric columns in one table: a larger group is split (``topology, 1 of 2``)."""


def metric_group(metric: str) -> str:
    """The report group of a metric key (per-class keys with their metric; ``other`` for keys that are
    not registered metrics), from the registry entry's catalog module."""
    if not is_metric(metric):
        return "other"
    module = getattr(metric_info(metric).fn, "__module__", "") or ""
    leaf = module.rsplit(".", 1)[-1]
    return _GROUP_OF_MODULE.get(leaf, leaf or "other")


def metric_tables(metrics: Sequence[str], primary: str | None) -> list[tuple[str, list[str]]]:
    """``(title, metric keys)`` of the per-group tables, in the metrics' order; the primary metric is in
    every table already, so it is in none of these lists."""
    groups: dict[str, list[str]] = {}
    for m in metrics:
        if m != primary:
            groups.setdefault(metric_group(m), []).append(m)
    out = []
    for name, keys in groups.items():
        chunks = [keys[i : i + GROUP_COLUMNS] for i in range(0, len(keys), GROUP_COLUMNS)]
        for i, chunk in enumerate(chunks):
            out.append((name if len(chunks) == 1 else f"{name}, {i + 1} of {len(chunks)}", chunk))
    return out


def _head(names: Sequence[str], tips: Sequence[str] = ()) -> str:
    cells = []
    for i, h in enumerate(names):
        tip = tips[i] if i < len(tips) and tips[i] else ""
        cells.append(f'<th title="{_e(tip)}">{_e(h)}</th>' if tip else f"<th>{_e(h)}</th>")
    return "<thead><tr>" + "".join(cells) + "</tr></thead>"


def _metric_head(m: str) -> str:
    return f"{m} {metric_info(m).arrow}" if is_metric(m) else m


def _metric_tip(m: str) -> str:
    return metric_info(m).description if is_metric(m) else ""


def _lead_cells(a: Analysis, row: Row) -> list[str]:
    """``#``, model, loss: the first cells of every table of the report."""
    m0 = primary_metric(a)
    rank = a.agg_rank.get(m0, {}).get(row.key) if m0 else None
    sort = _sort_value(rank) if rank is not None else "1e9"
    return [
        f'<td data-sort="{sort}">{_e(rank_text(a, row))}</td>',
        f'<td class="name">{_e(row.label)}</td>',
        f'<td class="name">{_e(row.loss)}</td>',
    ]


def _summary_table(a: Analysis) -> list[str]:
    """The primary metric with its difference to the best and its spread, and what a row is."""
    m0 = primary_metric(a)
    head, tips = ["#", "model", "loss"], ["", "", ""]
    if m0 is not None:
        unit = "group" if a.groups else "case"
        head += [_metric_head(m0), f"Δ best {m0} [95%]", f"sd seed / {unit} {m0}"]
        tips += [
            _metric_tip(m0),
            "paired difference row − best, 95% interval",
            f"standard deviation between runs (seeds) / between test {unit}s",
        ]
    head += ["params", "budget", "seeds", "folds", "train s", "notes"]
    out = ['<div class="scroll"><table class="sortable summary">' + _head(head, tips) + "<tbody>"]
    for row in a.rows:
        cells = _lead_cells(a, row)
        if m0 is not None:
            cells.append(_metric_cell(a, row.key, m0))
            comp = a.vs_best.get(m0, {}).get(row.key)
            s0 = a.row_stats.get(row.key, {}).get(m0)
            best = "best" if a.is_best(m0, row.key) else "–"
            diff = f"{fmt_diff(comp.diff)} {comp.mark}" if comp is not None else best
            sort = _sort_value(comp.diff.mean) if comp is not None else ""
            cells.append(f'<td class="metric" data-sort="{sort}">{_e(diff)}</td>')
            cells.append(f"<td>{_e(fmt_spread(s0.ci) if s0 is not None else '–')}</td>")
        info = a.info[row.key]
        cells += [
            f'<td data-sort="{info.params or 0}">{_e(fmt_params(info.params, info.preset))}</td>',
            f"<td>{_e(info.budget)}</td>",
            f"<td>{_e(info.seeds)}</td>",
            f"<td>{_e(info.folds)}</td>",
            f"<td>{_e(info.train_seconds_text)}</td>",
            f'<td class="notes">{_e("; ".join(a.notes.get(row.key, [])))}</td>',
        ]
        out.append(f'<tr class="{a.role(row)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _group_table(a: Analysis, title: str, metrics: Sequence[str]) -> list[str]:
    """One metric group: ``#``, model, loss, the primary metric and the group's metrics."""
    m0 = primary_metric(a)
    shown = ([m0] if m0 else []) + list(metrics)
    head = ["#", "model", "loss", *[_metric_head(m) for m in shown]]
    tips = ["", "", "", *[_metric_tip(m) for m in shown]]
    out = [
        f'<h4 class="group">{_e(title)}: {_e(", ".join(metrics))}</h4>',
        f'<div class="scroll"><table class="sortable group" data-group="{_e(title)}">' + _head(head, tips),
        "<tbody>",
    ]
    for row in a.rows:
        cells = _lead_cells(a, row) + [_metric_cell(a, row.key, m) for m in shown]
        out.append(f'<tr class="{a.role(row)}">' + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _metric_cell(a: Analysis, key: str, m: str) -> str:
    s = a.row_stats.get(key, {}).get(m)
    if s is None:
        return '<td class="metric" data-sort="">–</td>'
    cls = "metric best" if a.is_best(m, key) else "metric"
    mark = a.mark(m, key)
    r = s.reduction
    tip = (
        f"median {fmt_num(r['median'])}, std {fmt_num(r['std'])}, n {r['n']}, NaN {r['n_nan']}, "
        f"inf {r['n_inf']}, runs {s.n_runs}"
    )
    text = fmt_cell(s)
    head, sep, rest = text.partition(" [")
    body = _e(head) + (f' <span class="ci">[{_e(rest)}</span>' if sep else "")
    body += f' <span class="mark">{_e(mark)}</span>' if mark else ""
    return f'<td class="{cls}" data-sort="{_sort_value(r["mean"])}" title="{_e(tip)}">{body}</td>'


def _noise_pairs(a: Analysis) -> list[tuple[str, list[str]]]:
    """Per ranking metric, the pairs whose mean difference is below the seed spread, one line each."""
    out = []
    for m in a.rank_metrics:
        lines = [
            f"{row_title(a.ranked_row(p.a))} vs {row_title(a.ranked_row(p.b))} "
            f"(Δ {fmt_num(p.paired.diff)} < seed sd {fmt_num(p.noise_sd)})"
            for p in a.pairs.get(m, [])
            if p.within_noise
        ]
        if lines:
            out.append((m, lines))
    return out


def _noise_html(a: Analysis) -> list[str]:
    """The pairs within training noise, collapsed behind their count (one list per metric)."""
    if not has_all_pairs(a):
        return [
            f"<p class='small'>Significance map, pairs within training noise: {_text(ALL_PAIRS_OFF)}.</p>"
        ]
    per_metric = _noise_pairs(a)
    total = sum(len(lines) for _, lines in per_metric)
    if not total:
        return []
    counts = ", ".join(f"{m} {len(lines)}" for m, lines in per_metric)
    out = [
        '<details class="pairs"><summary>'
        + _e(f"{total} pairs within training noise ({counts}): mean difference below the seed spread")
        + "</summary>"
    ]
    for m, lines in per_metric:
        out.append(
            f"<h5>{_e(m)}</h5><ul class='small'>" + "".join(f"<li>{_e(x)}</li>" for x in lines) + "</ul>"
        )
    out.append("</details>")
    return out


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
        f"seed share of {m0} variance",
    ]
    out = [
        f"<p class='small'>{_e(SEED_SHARE_TEXT.format(m=m0))}</p>",
        '<div class="scroll"><table class="sortable stability">' + _head(head) + "<tbody>",
    ]
    for i, row in enumerate(a.ranked):
        share = a.row_stats[row.key][m0].seed_share
        vals = [
            row.label,
            row.loss,
            "–" if a.combined.get(row.key) is None else f"{a.combined[row.key]:.0f}",
            f"{a.agg_rank[m0][row.key]:.0f}",
            f"{a.case_rank[m0][row.key]:.2f}",
            f"{st.p_first[i]:.2f}",
            f"{st.mean_rank[i]:.2f}",
            f"{st.lo[i]:.0f}–{st.hi[i]:.0f}",
            "–" if math.isnan(share) else f"{100 * share:.0f}%",
        ]
        out.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in vals) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def render_html(
    analyses: Sequence[Analysis],
    *,
    problems: Sequence[tuple[Path, str]] = (),
    plots: bool = True,
    results_name: str | None = None,
    explain: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> str:
    """The report as one HTML document (image paths relative to the results folder); ``results_name``:
    how the header names the results folder the records came from (``None``: no folder named);
    ``explain``: per run id, the saliency figures ``segbench explain`` wrote
    (:func:`bench.records.explain_files.explain_panels`), shown under the table of the run's row."""
    where = (
        f"the run records under <code>{_e(results_name.rstrip('/'))}/</code>"
        if results_name
        else "run records"
    )
    body = [
        "<h1>segbench leaderboard</h1>",
        f"<p class='small'>Generated by <code>segbench leaderboard</code> from {where}.</p>",
        '<p class="status" id="status">loading…</p>',
    ]
    body.append(f'<p class="legend">{_e(LEGEND)}</p>')
    if not analyses:
        body.append("<p>No run records yet: <code>segbench run</code> writes them.</p>")
    for a in analyses:
        body += _section(a, plots=plots, explain=explain or {})
    if problems:
        body.append(
            "<h2>Records left out</h2><ul>"
            + "".join(f"<li><code>{_e(p)}</code> — {_e(r)}</li>" for p, r in problems)
            + "</ul>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>segbench leaderboard</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style><script>{_HEAD_JS}</script></head><body>\n"
        + "\n".join(body)
        + f"\n<script>{_JS}</script>\n</body></html>\n"
    )


def _section(
    a: Analysis, *, plots: bool, explain: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
) -> list[str]:
    """One table: its settings, the summary and per-group tables, what # is, the legend, the pairs
    within noise, stability, figures with their notes, provenance."""
    t = a.table
    body = [f'<section class="table" id="{_e(t.slug)}">', f"<h2>{_e(t.label)}</h2>"]
    if len(t.sweeps) > 1:
        body.append(f"<p class='small'>Sweeps: {_e(', '.join(t.sweeps))}.</p>")
    if t.settings:
        body.append("<p class='small'>Settings: " + _e(settings_text(t.settings)) + "</p>")
    body.append(f'<p class="rank">{_text(rank_sentence(a))}</p>')
    body += _summary_table(a)
    for title, metrics in metric_tables(a.metrics, primary_metric(a)):
        body += _group_table(a, title, metrics)
    body.append(f'<p class="legend">{_e(a.legend_text())}</p>')
    if len(a.ranked) > 1:
        body += _noise_html(a)
    if a.stability is not None:
        body.append(
            f"<h3>Ranking stability of {_e(stability_of(a))} ({a.stability.n_resamples} resamples, "
            f"seed {a.stability.seed})</h3>"
        )
        body += _stability_html(a)
    if plots:
        body += _figures(a)
    body += _explain_html(a, explain or {})
    body.append(
        f"<details class='provenance'><summary>Provenance of the {len(a.rows)} rows</summary>"
        "<ul class='small'>"
    )
    for row in a.rows:
        body.append(f"<li><b>{_e(row_title(row))}</b>: <code>{_e(a.info[row.key].provenance)}</code></li>")
    body.append("</ul></details></section>")
    return body


def _figures(a: Analysis) -> list[str]:
    """Each figure linked to its full-size file, with the notes of what it leaves out under it."""
    notes = dict(a.plot_notes)
    out = []
    for title, name in a.plot_names():
        src = _e(f"plots/{a.table.slug}/{name}")
        mine = {
            k: v
            for k, v in notes.items()
            if k == title or k.startswith(f"{title} ") or k.startswith(f"{title}:")
        }
        for k in mine:
            notes.pop(k)
        caption = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in mine.items())
        out.append(
            f'<figure><h3>{_e(title)}</h3><a href="{src}">'
            f'<img src="{src}" alt="{_e(title)}" loading="eager"></a>'
            + (f"<figcaption><ul class='small'>{caption}</ul></figcaption>" if caption else "")
            + "</figure>"
        )
    if notes:
        out.append(
            "<ul class='small'>" + "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in notes.items()) + "</ul>"
        )
    return out


def _explain_html(a: Analysis, explain: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """The saliency figures of the table's runs (``segbench explain``, docs/explain.md), each with
    its row, case, class, methods and the randomisation check's verdict when it was run."""
    out = []
    for row in a.rows:
        for rec in row.done:
            for p in explain.get(rec.run_id, ()):
                src = _e(p["href"])
                check = ""
                if p.get("sanity"):
                    verdicts = ", ".join(
                        f"{m}: {'passed' if ok else 'FAILED'}" for m, ok in p["sanity"].items()
                    )
                    check = f"; randomisation check {verdicts}"
                out.append(
                    f"<figure><h3>{_e(row_title(row))}: saliency of case {_e(p['case_id'])}, class "
                    f'{_e(p["class"])}</h3><a href="{src}"><img src="{src}" alt="saliency of '
                    f'{_e(p["case_id"])}" loading="lazy"></a><figcaption class="small">'
                    f"{_e(', '.join(p['methods']))}{_e(check)} (run <code>{_e(rec.run_id)}</code>, "
                    "docs/explain.md)</figcaption></figure>"
                )
    return ["<h3>Saliency maps</h3>", *out] if out else []


def write_report(
    analyses: Sequence[Analysis],
    results: Path,
    *,
    problems: Sequence[tuple[Path, str]] = (),
    plots: bool = True,
    results_name: str | None = None,
) -> Path:
    """Write ``<results>/report.html`` (atomically) and return its path; ``results_name``: how the
    header names the results folder (``None``: no folder named)."""
    path = Path(results) / "report.html"
    run_ids = {rec.run_id for a in analyses for row in a.rows for rec in row.done}
    explain = {rid: panels for rid in sorted(run_ids) if (panels := explain_panels(Path(results), rid))}
    page = render_html(analyses, problems=problems, plots=plots, results_name=results_name, explain=explain)
    write_text_atomic(path, page)
    return path
