"""Does a training scheme beat supervised training at the same label budget? The sentence under a table.

A row trained with a scheme other than ``supervised`` (``scheme`` in its config, ``models.schemes``)
is compared with the row of the same table whose config is the same but for the scheme: the same
network, loss, budget and label budget (``data.labelled_fraction``). The comparison is paired over
the table's units (case groups where the dataset has them, else cases), on the table's primary
metric: the mean difference with its paired bootstrap interval and a two-sided Wilcoxon
signed-rank test (:func:`bench.leaderboard.stats.paired_compare`), Holm-adjusted over the table's
scheme comparisons. A scheme **beats** supervised training when the adjusted p-value is below
:data:`ALPHA` and the difference favours it, is **worse** when the adjusted p-value is below
:data:`ALPHA` and the difference goes against it; otherwise the difference is within noise (with
few units, e.g. 4 case groups, no difference can be told apart from noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.leaderboard import stats
from bench.leaderboard.format import row_title
from bench.leaderboard.intervals import group_units
from bench.metrics.registry import higher_is_better
from bench.records.identity import HASH_DEFAULTS, row_key, with_hash_defaults

if TYPE_CHECKING:
    from bench.leaderboard.analysis import Analysis
    from bench.leaderboard.rows import Row

ALPHA = 0.05
SUPERVISED = HASH_DEFAULTS["scheme"]


@dataclass(frozen=True)
class SchemeComparison:
    """One scheme row against its supervised counterpart (``diff``: scheme minus supervised)."""

    row: str
    reference: str
    fraction: float
    paired: stats.Paired
    p_adj: float
    beats: bool


def compare_schemes(a: Analysis) -> list[SchemeComparison]:
    """Every ranked train row with a non-supervised scheme that has a supervised counterpart in the
    table, compared on the primary metric (see the module docstring); table order."""
    metric = a.primary
    if metric is None:
        return []
    keys = {r.key: r for r in a.ranked if r.kind == "train"}
    found: list[tuple[Row, Row, stats.Paired]] = []
    for row in a.ranked:
        if row.kind != "train" or with_hash_defaults(row.config)["scheme"] == SUPERVISED:
            continue
        twin = {**row.config, "scheme": dict(SUPERVISED)}  # the row's own fields, only the scheme changed
        ref = keys.get(row_key(twin))
        if ref is None:
            continue
        x = a.case_values.get(row.key, {}).get(metric)
        y = a.case_values.get(ref.key, {}).get(metric)
        if x is None or y is None:
            continue
        ux = group_units(np.asarray(x)[None, :], a.cases, a.groups)[0][0]
        uy = group_units(np.asarray(y)[None, :], a.cases, a.groups)[0][0]
        sign = 1.0 if higher_is_better(metric) else -1.0
        found.append((row, ref, stats.paired_compare(sign * ux, sign * uy, seed=a.seed)))
    if not found:
        return []
    p = [c[2].p for c in found]
    adj = stats.holm([1.0 if math.isnan(v) else v for v in p])
    return [
        SchemeComparison(
            row.key,
            ref.key,
            float(with_hash_defaults(row.config)["data"]["labelled_fraction"]),
            pr,
            float(q),
            bool(q < ALPHA and pr.diff > 0),
        )
        for (row, ref, pr), q in zip(found, adj)
    ]


def _pct(fraction: float) -> str:
    return "every label" if fraction >= 1 else f"{fraction * 100:g} % of the labels"


def scheme_sentence(a: Analysis) -> str:
    """The sentence under a table that has scheme rows (empty otherwise): per scheme row, whether it
    beats the supervised row at its label budget, with the difference, its interval and the
    adjusted p-value. Differences are in the direction 'better is positive'."""
    comps = compare_schemes(a)
    if not comps:
        return ""
    metric = a.primary
    rows = {r.key: r for r in a.ranked}
    parts = []
    for c in comps:
        pr = c.paired
        verdict = "beats" if c.beats else "does not beat"
        why = ""
        if not c.beats:
            worse = c.p_adj < ALPHA and pr.diff < 0  # the test, not the interval alone, says worse
            why = " (worse)" if worse else " (the difference is within noise)"
        parts.append(
            f"with {_pct(c.fraction)}, `{row_title(rows[c.row])}` {verdict} `{row_title(rows[c.reference])}`"
            f"{why}: Δ {metric} {pr.diff:+.3f} [{pr.lo:+.3f}, {pr.hi:+.3f}], Holm p {c.p_adj:.2g}, "
            f"{pr.n} pairs"
        )
    return (
        f"Training schemes against supervised training at the same label budget (paired over the "
        f"table's units, Wilcoxon signed-rank, Holm over {len(comps)} comparison(s), α {ALPHA}): "
        + "; ".join(parts)
        + "."
    )
