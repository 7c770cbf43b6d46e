"""Published results beside a table: what the papers report on a dataset, and the gap to the table's
best row, in one generated sentence under each table of that dataset.

A published number comes from another split, budget and often another size of the network: it is a
reference that says whether a table measures a trained model or an early one, not a comparison
(the sentence says so). Each entry names its source; add one per dataset and metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.leaderboard.analysis import Analysis
from bench.leaderboard.format import row_title


@dataclass(frozen=True)
class PublishedResult:
    """A range of published values of one metric on one dataset (``low == high`` for one number)."""

    dataset: str
    metric: str  # a key of the records' per-case metrics (``dice``, ``dice_1`` ...)
    low: float
    high: float
    what: str  # which models / setting the papers report it for
    source: str


PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult(
        "chase_db1",
        "dice",
        0.80,
        0.82,
        "U-Net-class models (full training, the papers' own splits)",
        "the retinal-vessel papers of segbench's zoo (docs/models.md)",
    ),
    PublishedResult(
        "msd_hippocampus",
        "dice_1",
        0.90,
        0.90,
        "nnU-Net, anterior (head)",
        "Isensee et al., nnU-Net, Nature Methods 2021 (MSD test set)",
    ),
    PublishedResult(
        "msd_hippocampus",
        "dice_2",
        0.89,
        0.89,
        "nnU-Net, posterior (body)",
        "Isensee et al., nnU-Net, Nature Methods 2021 (MSD test set)",
    ),
    PublishedResult(  # a record's dice is the mean of its classes' Dice, case by case
        "msd_hippocampus",
        "dice",
        0.895,
        0.895,
        "nnU-Net, the mean of its anterior 0.90 and posterior 0.89",
        "Isensee et al., nnU-Net, Nature Methods 2021 (MSD test set)",
    ),
)
"""What segbench compares its tables with (one entry per dataset and metric)."""


def _num(v: float) -> str:
    """Two decimals, three where the number has them (0.895)."""
    return f"{v:.2f}" if round(v, 2) == v else f"{v:.3f}"


def _range(p: PublishedResult) -> str:
    return _num(p.low) if p.low == p.high else f"{_num(p.low)}–{_num(p.high)}"


def published_sentence(a: Analysis) -> str:
    """The sentence under a table on its dataset's published results (empty without any): per
    entry, the table's best ranked train row on that metric (collapsed rows left out) with its
    interval, and the gap to the published range (0 inside it). None under a table of another test
    protocol (an interactive table's Dice is after the clicks)."""
    if a.table.settings.get("protocol"):  # e.g. Dice after 20 clicks: not what the papers report
        return ""
    parts = []
    for p in PUBLISHED:
        if p.dataset != a.table.dataset:
            continue
        rows = [
            r
            for r in a.ranked
            if r.kind == "train" and r.key not in a.collapsed and p.metric in a.row_stats.get(r.key, {})
        ]
        means = {r.key: a.row_stats[r.key][p.metric].reduction["mean"] for r in rows}
        rows = [r for r in rows if math.isfinite(means[r.key])]
        if not rows:
            continue
        best = max(rows, key=lambda r: means[r.key])
        st = a.row_stats[best.key][p.metric]
        m = means[best.key]
        gap = m - p.high if m > p.high else m - p.low if m < p.low else 0.0
        digits = 3 if abs(gap) >= 5e-4 else 4  # a gap under half a point of the third decimal stays visible
        where = "inside the published range" if gap == 0 else f"{gap:+.{digits}f} from the published range"
        parts.append(
            f"{p.metric} {_range(p)} for {p.what}, reported by {p.source}; here the best row, "
            f"`{row_title(best)}`, has {m:.3f} [{st.ci.lo:.3f}, {st.ci.hi:.3f}]: {where}"
        )
    if not parts:
        return ""
    return (
        "Published reference (other splits, budgets and sizes: a reference, not a comparison): "
        + "; ".join(parts)
        + "."
    )
