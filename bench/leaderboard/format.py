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

from bench.leaderboard.intervals import MeanInterval
from bench.leaderboard.rows import Row, setting_words
from bench.leaderboard.stats import ALPHA, RowStats
from bench.leaderboard.wilcoxon import smallest_p
from bench.metrics.registry import is_metric, metric_info
from bench.records.record import Record

LEGEND = (
    "Cells: mean [95% interval: crossed seed × test-unit random-effects t interval with Satterthwaite "
    "degrees of freedom; a unit is a case, or a case group when the dataset declares groups; one run: "
    "t over the units, which ignores training noise; cut to the values the metric can take, e.g. [0, 1] "
    "for Dice]; (k ∞) / (k NaN): infinite values are in the mean, "
    "NaN (undefined) ones are left out. Bold: best of the column among rows that are neither collapsed "
    "(every run degenerate) nor baselines. Marks compare a row with that best (m − 1 comparisons, Holm, "
    f"two-sided Wilcoxon signed-rank on paired seed-averaged unit values, α {ALPHA}): * differs, ns not "
    "significant, · n too small to test (the smallest p the exact test can reach after the correction "
    "exceeds α), ≡ as good as the best within the stated margin (TOST, only with --equivalence-margin); "
    "† topology value of a row with collapsed runs (read it beside Dice). #: the rank of the row's mean on "
    "the table's primary metric (named under each table); human: second annotator against the first, not "
    "ranked. docs/leaderboard.md."
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


def fmt_params(params: int | None, preset: str | None = None) -> str:
    """Parameter count as ``0.40 M`` (``12.3 k`` below 10 000), with the size ``preset`` the
    network was built at when given: ``0.35 M (small)``."""
    if not params:
        return "–"
    text = f"{params / 1e3:.1f} k" if params < 10_000 else f"{params / 1e6:.2f} M"
    return f"{text} ({preset})" if preset else text


def settings_text(settings: Mapping[str, Any]) -> str:
    """A table's settings in words (:data:`bench.leaderboard.rows.SETTING_WORDS`), by setting name:
    ``Betti patch 64, NSD tolerance 1.0, 32 test cases, training patch 64×64``."""
    return ", ".join(setting_words(k, v) for k, v in sorted(settings.items()))


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
        f"commit {','.join(commits)}" + _dirty(recs),
        "records " + ", ".join(f"`{r.run_id}`" + ("" if r.done else f" ({r.status})") for r in recs),
    ]
    return "; ".join(parts)


def _dirty(recs: Sequence[Record]) -> str:
    """`` (dirty: `run`, ...)`` naming the runs written from an uncommitted tree (``all N`` when all)."""
    dirty = [r.run_id for r in recs if r.dirty]
    if not dirty:
        return ""
    if len(dirty) == len(recs) and len(recs) > 1:
        return f" (dirty: all {len(recs)} runs)"
    return " (dirty: " + ", ".join(f"`{d}`" for d in dirty) + ")"


def threads_text(threads: Sequence[int], gpus: Sequence[str] = ()) -> str:
    """``1 thr`` / ``1–2 thr`` of a row's CPU torch thread counts (``?`` when unknown), or the
    names of the GPUs its runs trained on, both when it has runs on each."""
    ts = sorted(set(threads))
    cpu = "? thr" if not ts else f"{ts[0]} thr" if len(ts) == 1 else f"{ts[0]}–{ts[-1]} thr"
    return ", ".join([*sorted(set(gpus)), *([cpu] if ts or not gpus else [])])


def fmt_diff(iv: MeanInterval) -> str:
    """A paired difference to the best: ``-0.012 [-0.020, -0.004]`` (``+`` shown)."""
    if math.isnan(iv.mean):
        return "–"
    sign = "+" if iv.mean > 0 else ""
    return f"{sign}{fmt_num(iv.mean)} [{fmt_num(iv.lo, iv.mean)}, {fmt_num(iv.hi, iv.mean)}]"


def fmt_spread(iv: MeanInterval) -> str:
    """``seed sd / unit sd`` of an interval (``–`` for a missing one)."""
    return f"{fmt_num(iv.seed_sd, iv.mean)} / {fmt_num(iv.unit_sd, iv.mean)}"


def _device(rec: Record) -> str:
    dev = rec.device
    return str(dev.get("name") or dev.get("gpu") or dev.get("accelerator") or dev.get("cpu") or "?")


def legend(
    n_resamples: int,
    seed: int,
    rank_metrics: Sequence[str],
    *,
    units: str = "",
    n_compared: int = 0,
    n_pairs: int | None = None,
    margin: float | None = None,
    threads: Sequence[int] = (),
    gpus: Sequence[str] = (),
) -> str:
    """The per-table line: what a pair is, the family of the marks and what the smallest p is at this
    size, the equivalence margin, thread counts when rows differ, and what the rank stability resamples
    (``#`` itself is :func:`rank_sentence`)."""
    parts = []
    if units:
        parts.append(f"Intervals and tests over {units}, paired over the units.")
    if n_compared:
        text = (
            f"Marks: Holm over the {n_compared} comparison(s) with the best, two-sided exact Wilcoxon "
            f"signed-rank, α {ALPHA}"
        )
        if n_pairs is not None:
            floor = min(1.0, n_compared * 2.0 / 2.0**n_pairs)
            text += f"; with {n_pairs} pairs the smallest adjusted p is "
            text += f"{n_compared}·2/2^{n_pairs} = {floor:.3g}"
            text += " (· n too small to test)" if floor > ALPHA else ""
        parts.append(text + ".")
    if margin is not None:
        parts.append(
            f"≡: the 90% interval of the paired difference to the best lies within ±{margin:g} (TOST)."
        )
    else:
        parts.append("No equivalence claim (no --equivalence-margin).")
    if gpus and (threads or len(set(gpus)) > 1):
        ts = sorted(set(threads))
        cpu = f" and on the CPU with {' and '.join(map(str, ts))} torch thread" if ts else ""
        cpu += "s" if ts and ts != [1] else ""
        on = " and ".join(sorted(set(gpus)))
        parts.append(f"train s: rows ran on {on}{cpu} (per cell); their times do not compare.")
    elif len(set(threads)) > 1:
        parts.append(
            f"train s: rows ran with {' and '.join(str(t) for t in sorted(set(threads)))} torch threads "
            "(per cell); their times do not compare."
        )
    elif gpus:
        parts.append(f"train s: every trained row ran on {next(iter(gpus))}.")
    elif threads:
        (n,) = set(threads)
        parts.append(
            f"train s: every trained row ran on the CPU with {n} torch thread{'s' if n != 1 else ''}."
        )
    parts.append(
        f"Rank stability: {n_resamples} two-level bootstrap resamples, seed {seed}, of the rank on each of "
        f"{', '.join(rank_metrics) or 'no metric'}."
    )
    return " ".join(parts)


# ---- what an Analysis says about its ranks and pairs (read, never computed, here) ----------

ALL_PAIRS_OFF = "all-pairs tests not computed (`segbench leaderboard --all-pairs`)"
"""What the outputs say where the all-pairs tests (significance map, pairs within noise) would be."""


def primary_metric(a: Any) -> str | None:
    """The metric that ranks an analysis's rows (``Analysis.primary``, its first ranking metric)."""
    return getattr(a, "primary", None) or (a.rank_metrics[0] if a.rank_metrics else None)


def has_all_pairs(a: Any) -> bool:
    """Whether the all-pairs tests were computed for an analysis (``Analysis.all_pairs``)."""
    return bool(getattr(a, "all_pairs", bool(a.pairs)))


def rank_text(a: Any, row: Row) -> str:
    """The ``#`` cell of a row: its rank on the primary metric's mean (``human`` / ``failed`` for rows
    outside the ranking)."""
    m = primary_metric(a)
    rank = a.agg_rank.get(m, {}).get(row.key) if m is not None else None
    if rank is not None and not math.isnan(rank):
        return f"{rank:.0f}"
    return "human" if row.human else ("failed" if not row.done else "–")


def stability_of(a: Any) -> str:
    """What ``Analysis.stability`` resamples: the primary metric's rank (the table's order), or the
    combined rank where an analysis still computes that."""
    m = primary_metric(a)
    same = m is not None and a.stability is not None and a.stability is a.metric_stability.get(m)
    return f"the rank on {m}" if same else "the combined rank"


def rank_sentence(a: Any) -> str:
    """The sentence beside a table that says what ``#`` is and where the combined rank went (Markdown:
    code in backticks, and never a line that starts with ``#``)."""
    m = primary_metric(a)
    if m is None:
        return "`#`: no metric to rank by."
    info = metric_info(m) if is_metric(m) else None
    way = "" if info is None else f" ({'higher' if info.higher_is_better else 'lower'} is better)"
    text = f"`#` ranks rows by mean {m}{way}; ties share the better rank."
    others = [k for k in a.rank_metrics if k != m]
    if others:
        text += (
            f" The combined rank over {', '.join(a.rank_metrics)} (the mean of their ranks) is "
            "`combined_rank` in the JSON/CSV export."
        )
    return text


SEED_SHARE_TEXT = (
    "seed share: the part of a row's variance of {m} that lies between its runs (training seeds) "
    "rather than between test cases (one-way random-effects ANOVA over the runs); 0% means the runs "
    "differ no more than their case-to-case spread alone would make them differ, – a single run."
)
"""What the ``seed share`` column of the ranking-stability table is (``.format(m=metric)``)."""


def significance_note(a: Any, metric: str) -> str | None:
    """Why the significance map of ``metric`` is all grey, in words (None when a pair is significant or
    no pair was tested): ``n`` too small for any Holm-adjusted p to reach α, or no pair that did."""
    pairs = a.pairs.get(metric, [])
    if not pairs or any(p.significant for p in pairs):
        return None
    n, k = max(p.paired.n for p in pairs), len(pairs)
    floor = smallest_p(n, k)
    if floor > ALPHA:
        return (
            f"no pair can be significant: with {n} paired cases the smallest two-sided p is 2/2^{n} = "
            f"{smallest_p(n):.2g}, and Holm over the {k} pairs raises it to {floor:.2g} > α {ALPHA} "
            "(n too small to test)"
        )
    return f"no pair of rows differs significantly (Wilcoxon signed-rank, Holm over the {k} pairs, α {ALPHA})"
