"""HD95 and NSD of one class, from one computation of the surface distances (on the crop, in
the physical units of the case's spacing)."""

from __future__ import annotations

import numpy as np

from bench.metrics.context import ClassContext
from bench.metrics.distance import _hd95_compute, _nsd_compute, surface_distances
from bench.metrics.registry import register_metric


def _distances(ctx: ClassContext) -> tuple[np.ndarray, np.ndarray]:
    """Both directed surface-distance arrays, computed once per class."""
    return ctx.memo("surface_distances", lambda: surface_distances(ctx.pred, ctx.target, spacing=ctx.spacing))


@register_metric(
    "hd95",
    higher_is_better=False,
    worst=float("inf"),
    bounds=(0.0, float("inf")),
    description="95th-percentile symmetric Hausdorff distance",
    empty="both empty: NaN; one empty: inf",
    uses_spacing=True,
    position=60,
)
def _hd95(ctx: ClassContext) -> float:
    return _hd95_compute(*_distances(ctx))


@register_metric(
    "nsd",
    higher_is_better=True,
    worst=0.0,
    bounds=(0.0, 1.0),
    description="normalised surface Dice at the tolerance",
    empty="both empty: NaN; one empty: 0",
    settings=("nsd_tolerance",),
    uses_spacing=True,
    position=70,
)
def _nsd(ctx: ClassContext, *, nsd_tolerance: float) -> float:
    return _nsd_compute(*_distances(ctx), nsd_tolerance)
