"""The one formatting leaf: how numbers, cells, rows and settings are spelled in every output.

The Markdown table, the exports, the HTML report and the figures all format through these
functions, and :meth:`bench.leaderboard.analysis.Analysis.to_dict` uses them for the JSON's text
fields, so a value reads the same everywhere. Nothing here computes a statistic or imports a
renderer: this module depends on :mod:`bench.leaderboard.rows` and :mod:`bench.leaderboard.stats`
only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from bench.leaderboard.rows import Row, value_text
from bench.leaderboard.stats import ALPHA, RowStats
from bench.records.record import Record

LEGEND = (
    "Cells: mean over test cases [bootstrap 95% CI; two levels, runs then cases, when a row has several "
    "seeds/folds]; (k ∞) / (k NaN): infinite values are in the mean, NaN (undefined) ones are left out. "
    "Bold: best; ≈: not significantly different from the best (Wilcoxon signed-rank on paired cases, Holm "
    f"over the table's pairs, α {ALPHA}). #: combined rank (mean of the metric ranks); human: second "
    "annotator against the first, not ranked. What each number means: docs/leaderboard.md."
)
"""What a cell, a mark and a rank mean: the line under the title of the Markdown and the HTML."""


def fmt_num(v: float | None, ref: float | None = None) -> str:
    """A value with 3 decimals (1 when the magnitude ``ref`` is ≥ 10); ``∞``/``–`` for inf/NaN."""
    if v is None or math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    scale = abs(ref if ref is not None and math.isfinite(ref) else v)
    return f"{v:.1f}" if scale >= 10 else f"{v:.3f}"


def fmt_cell(s: RowStats) -> str:
    """``mean [lo, hi]`` plus the counts of infinite and NaN values."""
    r = s.reduction
    if r["n"] == 0:
        return "–" + (f" ({r['n_nan']} NaN)" if r["n_nan"] else "")
    text = f"{fmt_num(r['mean'])} [{fmt_num(s.ci.lo, r['mean'])}, {fmt_num(s.ci.hi, r['mean'])}]"
    extra = []
    if r["n_inf"]:
        extra.append(f"{r['n_inf']} ∞")
    if r["n_nan"]:
        extra.append(f"{r['n_nan']} NaN")
    return text + (f" ({', '.join(extra)})" if extra else "")


def fmt_params(params: int | None) -> str:
    """Parameter count as ``0.40 M`` (``12.3 k`` below 10 000)."""
    if not params:
        return "–"
    return f"{params / 1e3:.1f} k" if params < 10_000 else f"{params / 1e6:.2f} M"


def settings_text(settings: Mapping[str, Any]) -> str:
    """``key value, ...`` of a table's settings."""
    return ", ".join(f"{k} {value_text(v)}" for k, v in sorted(settings.items()))


def row_title(row: Row, width: int | None = None) -> str:
    """``label / loss`` of a row (the label alone for an evaluation, whose loss cell is ``–``), cut
    to ``width`` characters with ``…`` when given."""
    text = f"{row.label} / {row.loss}" if row.loss != "–" else row.label
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def budget(row: Row) -> str:
    """The training budget of a row (configured max_steps / max_epochs), ``–`` for evaluations."""
    tr = row.config.get("trainer") or {}
    if row.kind != "train" or not tr:
        return "–"
    parts = []
    if (tr.get("max_steps") or -1) > 0:
        parts.append(f"{tr['max_steps']} steps")
    if (tr.get("max_epochs") or -1) > 0:
        parts.append(f"{tr['max_epochs']} ep")
    return ", ".join(parts) or "unlimited"


def runs_text(row: Row, what: Literal["seed", "fold"]) -> str:
    """Sorted distinct ``seed`` / ``fold`` values of the row's done runs."""
    vals = sorted({getattr(r, what) for r in row.done}, key=str)
    return ",".join("–" if v is None else str(v) for v in vals) or "–"


def provenance(row: Row) -> str:
    """Budget, seeds, folds, device, commit and record ids of a row, on one line."""
    recs = row.records
    commits = sorted({r.commit[:8] for r in recs})
    devices = sorted({_device(r) for r in recs})
    steps = sorted({str(r.steps) for r in row.done if r.steps is not None})
    parts = [
        f"budget {budget(row)}" + (f" (ran {','.join(steps)} steps)" if steps else ""),
        f"seeds {runs_text(row, 'seed')}",
        f"folds {runs_text(row, 'fold')}",
        f"device {','.join(devices)}",
        f"commit {','.join(commits)}" + (" (dirty)" if any(r.dirty for r in recs) else ""),
        "records " + ", ".join(f"`{r.run_id}`" + ("" if r.done else f" ({r.status})") for r in recs),
    ]
    return "; ".join(parts)


def _device(rec: Record) -> str:
    dev = rec.device
    return str(dev.get("name") or dev.get("gpu") or dev.get("accelerator") or dev.get("cpu") or "?")


def legend(n_resamples: int, seed: int, rank_metrics: Sequence[str]) -> str:
    """The per-table line: bootstrap settings and the combined rank's metric set."""
    return (
        f"Intervals: {n_resamples} bootstrap resamples, seed {seed}. "
        f"# ranks by the mean rank of {', '.join(rank_metrics) or 'no metric'}."
    )
