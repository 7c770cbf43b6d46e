"""clDice of one class, deferred: its two skeletons (the slowest part of a case) start before
every other metric, in forked children for large volumes (:mod:`bench.metrics._parallel`):
one child for both on two cores, one child each with more."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.metrics._parallel import max_children, submit
from bench.metrics.context import ClassContext
from bench.metrics.registry import register_metric
from bench.metrics.topology import _cldice_combine, _skeleton_fraction


def _both_fractions(p: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """clDice's (Tprec, Tsens) of two non-empty masks."""
    return _skeleton_fraction(p, g), _skeleton_fraction(g, p)


@register_metric(
    "cldice",
    higher_is_better=True,
    worst=0.0,
    bounds=(0.0, 1.0),
    description="centreline Dice (Shit et al. 2021)",
    empty="both empty: NaN; one empty: 0; an empty skeleton is replaced by its mask",
    deferred=True,
    position=30,
)
def _cldice(ctx: ClassContext) -> Callable[[], float]:
    """Starts ``cldice(pred, target)`` on the crop; returns a waiter for the value."""
    p, g = ctx.pred, ctx.target
    p_any, g_any = bool(p.any()), bool(g.any())
    if not (p_any and g_any):  # cldice's empty rules: NaN if both are empty, else 0
        value = 0.0 if (p_any or g_any) else float("nan")
        return lambda: value
    if max_children() >= 2:  # one skeleton per child
        tprec = submit(_skeleton_fraction, p, g, n_voxels=p.size, parallel=ctx.parallel)
        tsens = submit(_skeleton_fraction, g, p, n_voxels=g.size, parallel=ctx.parallel)
        return lambda: _cldice_combine(tprec(), tsens())
    both = submit(_both_fractions, p, g, n_voxels=p.size, parallel=ctx.parallel)  # one child, 2 cores
    return lambda: _cldice_combine(*both())
