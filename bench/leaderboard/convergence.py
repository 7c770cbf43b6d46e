"""Did a row's training converge at its budget? Read from the runs' learning curves (``val_trace``).

Rule (stated in docs/leaderboard.md, "Convergence"): take the last :data:`WINDOW` (20 %) of a run's
validation points, at least :data:`MIN_POINTS`; fit a least-squares line of ``val_dice`` against the
optimiser step; the run is **still rising** when that slope exceeds :data:`SLOPE_PER_1K` Dice per
1,000 steps (the curve would gain more than half a Dice point per further 1,000 steps). A run with
fewer than :data:`MIN_TRACE` points (or no ``val_trace``: records written before it existed) cannot
be judged. A row is **not converged** when any of its done runs is still rising; ``unknown`` when
none can be judged; else ``converged``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WINDOW = 0.2
MIN_POINTS = 3
MIN_TRACE = 5
SLOPE_PER_1K = 0.005
"""Dice per 1,000 optimiser steps above which the last part of a curve counts as still rising."""


@dataclass(frozen=True)
class Convergence:
    """One run's or row's verdict: ``converged``, ``not converged`` or ``unknown``; ``slope`` is the
    largest fitted slope (Dice per 1,000 steps) among the judged runs, NaN when none."""

    status: str
    slope: float
    judged: int  # runs with enough points
    runs: int


def tail_slope(trace: Sequence[Sequence[float]]) -> float:
    """Least-squares slope (Dice per 1,000 steps) of the last :data:`WINDOW` of ``trace`` (points
    ``[step, val_dice, ...]`` with a finite Dice); NaN with fewer than :data:`MIN_TRACE` points."""
    pts = np.array([[p[0], p[1]] for p in trace if len(p) > 1 and math.isfinite(p[1])], dtype=np.float64)
    if len(pts) < MIN_TRACE:
        return math.nan
    n = max(MIN_POINTS, math.ceil(WINDOW * len(pts)))
    tail = pts[-n:]
    if np.ptp(tail[:, 0]) == 0:
        return math.nan
    slope = np.polyfit(tail[:, 0], tail[:, 1], 1)[0]
    return float(slope * 1000.0)


def row_convergence(traces: Sequence[Sequence[Sequence[float]]]) -> Convergence:
    """The verdict of a row from its done runs' ``val_trace`` lists (see the module docstring)."""
    slopes = [tail_slope(t) for t in traces]
    judged = [s for s in slopes if not math.isnan(s)]
    if not judged:
        return Convergence("unknown", math.nan, 0, len(traces))
    worst = max(judged)
    status = "not converged" if worst > SLOPE_PER_1K else "converged"
    return Convergence(status, worst, len(judged), len(traces))


def convergence_note(verdict: Convergence) -> str:
    """A not-converged row's note (generated from its verdict)."""
    return (
        f"not converged: validation Dice still rising ({verdict.slope:+.4f} per 1,000 steps over the last "
        f"{WINDOW:.0%} of the curve; threshold {SLOPE_PER_1K:g})"
    )


def convergence_sentence(verdicts: dict[str, Convergence]) -> str:
    """The sentence under a table on its train rows' convergence; empty without train rows."""
    if not verdicts:
        return ""
    counts = {
        s: sum(v.status == s for v in verdicts.values()) for s in ("converged", "not converged", "unknown")
    }
    parts = []
    if counts["not converged"]:
        parts.append(f"{counts['not converged']} row(s) not converged (marked in their notes)")
    if counts["converged"]:
        parts.append(f"{counts['converged']} row(s) with a flat end of their validation curve")
    if counts["unknown"]:
        parts.append(
            f"{counts['unknown']} row(s) without a learning curve long enough to judge "
            f"(fewer than {MIN_TRACE} validations, or recorded before segbench kept `val_trace`)"
        )
    return (
        f"Convergence (the last {WINDOW:.0%} of each run's validation Dice, rising by more than "
        f"{SLOPE_PER_1K:g} per 1,000 steps = not converged): " + "; ".join(parts) + "."
    )


def early_training_line(verdicts: dict[str, Convergence], budget: str | None) -> str:
    """The line over a table none of whose train rows is shown converged at its budget (every row
    not converged, or without a learning curve long enough to judge): "Early training", with the
    budget, so a reader takes the table for how fast the rows start, not where they end. Empty
    when a row converged or the table has no train row."""
    if not verdicts or any(v.status == "converged" for v in verdicts.values()):
        return ""
    at = f" at {budget}" if budget else ""
    return (
        f"**Early training{at}**: no row of this table is shown converged (the last {WINDOW:.0%} of a "
        "validation curve flat); it compares how the rows start, not where training ends."
    )
