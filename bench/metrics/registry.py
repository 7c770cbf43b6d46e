"""Metric registry: each per-case metric key with its function and everything known about it.

A leaf module (it imports no metric code). A metric is registered where it is written, in one
file under ``bench/metrics/catalog/``, with :func:`register_metric` on the function that computes
it for one case (see ``docs/metrics.md``, "Adding a metric"). :func:`bench.metrics.case_metrics`
computes every registered metric; the one reduction, tuning and the leaderboard read a metric's
direction and worst value from here. Per-class keys (``dice_1``, ``hd95_2``) share the
information of their base metric.

Each metric belongs to one evaluation protocol (:attr:`MetricInfo.protocol`). Ordinary runs
compute the ``"segmentation"`` metrics only; ``case_metrics(protocols=...)`` adds the other
protocols computed from one case (:data:`CASE_PROTOCOLS`). The metrics of the other protocols
(interactive clicks, multiple raters) are registered for their direction, worst value and empty
rule, and computed by their protocol's own code from its own inputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

PER_CLASS_KEY = "{key}_{c}"  # the key of class ``c``'s value of a per-class metric ``key``
POSITION_LAST = 1000.0  # default position: after every built-in metric
UNBOUNDED: tuple[float, float] = (-math.inf, math.inf)  # bounds of a metric with no declared range
SEGMENTATION = "segmentation"  # the protocol of ordinary runs
# protocols whose metrics ``case_metrics`` computes from one case (``fn(ctx, **settings)``)
CASE_PROTOCOLS: tuple[str, ...] = (SEGMENTATION, "uncertainty")


@dataclass(frozen=True)
class MetricInfo:
    """One metric key: its function and its metadata.

    Attributes:
        name: the key in ``case_metrics`` rows.
        higher_is_better: direction of improvement.
        description: one line for tables and docs.
        worst: the value a missed structure gets (``inf`` for distances, ``0`` for overlaps).
        bounds: ``(lo, hi)``, the values the metric can take by its definition (Dice ``(0, 1)``, a
            Betti error ``(0, inf)``); a table's interval of a mean is cut to them
            (:meth:`bench.leaderboard.intervals.MeanInterval.within`). ``(-inf, inf)``: unbounded.
        fn: ``fn(ctx, **settings) -> float`` (see :func:`register_metric`).
        empty: the empty-mask rule, e.g. ``"both empty: NaN; one empty: 0"``.
        settings: names of the :class:`~bench.metrics.settings.MetricSettings` values ``fn``
            reads; each is passed to it as a keyword argument.
        new_settings: settings this metric introduces, with their defaults (also passed to ``fn``).
        needs_probabilities: computed only when the case has class probabilities.
        per_class_key: pattern of the per-class keys (``"{key}_{c}"``); ``None`` for a metric with
            one value per case (``fn`` then gets the case, not a class).
        uses_spacing: whether the value is in physical units (voxel spacing).
        ndims: image dimensions it is defined for.
        requires: a setting that must be set (not ``None``) for the metric to be computed.
        full_image: ``fn`` reads the uncropped masks (``ctx.pred_full``, ``ctx.target_full``).
        deferred: ``fn`` starts the work and returns a waiter ``() -> float``; every deferred
            metric of a case is started before the others are computed (clDice's skeletons).
        check: ``check(shape, **settings)`` validates the settings for an image of ``shape``
            before any work starts (raises ``ValueError``).
        position: place of the key in rows and tables (ascending; ties keep registration order).
        protocol: the evaluation protocol the metric belongs to: ``"segmentation"`` (computed by
            every ordinary run), ``"uncertainty"`` (computed by ``case_metrics`` only when asked
            for), or a protocol outside :data:`CASE_PROTOCOLS` (``"interactive"``,
            ``"multirater"``), whose ``fn`` takes that protocol's inputs instead of a context
            and which ``case_metrics`` never computes.
    """

    name: str
    higher_is_better: bool
    description: str
    worst: float
    fn: Callable[..., Any] = field(compare=False, repr=False)
    bounds: tuple[float, float] = UNBOUNDED
    empty: str = ""
    settings: tuple[str, ...] = ()
    new_settings: Mapping[str, Any] = field(default_factory=dict, hash=False)
    needs_probabilities: bool = False
    per_class_key: str | None = PER_CLASS_KEY
    uses_spacing: bool = False
    ndims: tuple[int, ...] = (2, 3)
    requires: str | None = None
    full_image: bool = False
    deferred: bool = False
    check: Callable[..., None] | None = field(default=None, compare=False, repr=False)
    position: float = POSITION_LAST
    protocol: str = SEGMENTATION

    @property
    def arrow(self) -> str:
        """``↑`` or ``↓``."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def reads(self) -> tuple[str, ...]:
        """Every setting passed to :attr:`fn`: :attr:`settings`, then :attr:`new_settings`."""
        return (*self.settings, *self.new_settings)


METRICS: dict[str, MetricInfo] = {}  # ordered by position


def register_metric(
    name: str,
    *,
    higher_is_better: bool,
    worst: float,
    description: str,
    empty: str,
    bounds: tuple[float, float] = UNBOUNDED,
    settings: Sequence[str] = (),
    new_settings: Mapping[str, Any] | None = None,
    needs_probabilities: bool = False,
    per_class: bool = True,
    uses_spacing: bool = False,
    ndims: Sequence[int] = (2, 3),
    requires: str | None = None,
    full_image: bool = False,
    deferred: bool = False,
    check: Callable[..., None] | None = None,
    position: float = POSITION_LAST,
    protocol: str = SEGMENTATION,
) -> Callable[[F], F]:
    """Decorator: registers ``fn`` as the per-case metric ``name`` (each name once).

    ``fn(ctx, **settings) -> float`` gets a :class:`~bench.metrics.context.ClassContext` (one
    class of one case: masks on their joint crop, spacing, a cache shared with other metrics) or,
    with ``per_class=False``, the :class:`~bench.metrics.context.CaseContext`, plus one keyword
    argument per setting it reads. Arguments are the :class:`MetricInfo` attributes; with
    ``per_class=True`` the keys of class ``c`` are ``PER_CLASS_KEY`` (``dice_1``). A metric of a
    ``protocol`` outside :data:`CASE_PROTOCOLS` registers the function its protocol calls.

    Raises:
        ValueError: for a name registered twice, a new setting another metric declares, or
            ``bounds`` that are not ``lo <= hi`` with ``worst`` inside them.
    """
    new = dict(new_settings or {})
    lo, hi = (float(b) for b in bounds)
    if not lo <= float(worst) <= hi:
        raise ValueError(f"metric {name!r}: worst {worst} lies outside its bounds ({lo}, {hi})")

    def deco(fn: F) -> F:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        clash = [s for s in new if s in declared_settings()]
        if clash:
            raise ValueError(f"metric {name!r}: setting(s) {clash} are declared by another metric")
        info = MetricInfo(
            name=name,
            higher_is_better=higher_is_better,
            description=description,
            worst=float(worst),
            empty=empty,
            fn=fn,
            bounds=(lo, hi),
            settings=tuple(settings),
            new_settings=new,
            needs_probabilities=needs_probabilities,
            per_class_key=PER_CLASS_KEY if per_class else None,
            uses_spacing=uses_spacing,
            ndims=tuple(ndims),
            requires=requires,
            full_image=full_image,
            deferred=deferred,
            check=check,
            position=float(position),
            protocol=protocol,
        )
        entries = sorted([*METRICS.values(), info], key=lambda m: m.position)  # stable
        METRICS.clear()
        METRICS.update((m.name, m) for m in entries)
        return fn

    return deco


def declared_settings() -> dict[str, Any]:
    """``{setting: default}`` of the settings that registered metrics introduce."""
    return {k: v for m in METRICS.values() for k, v in m.new_settings.items()}


@lru_cache(maxsize=256)
def _per_class_pattern(name: str, pattern: str) -> re.Pattern[str]:
    parts = re.escape(pattern).replace(re.escape("{key}"), re.escape(name))
    return re.compile("^" + parts.replace(re.escape("{c}"), "(?P<c>[0-9]+)") + "$")


def metric_info(key: str) -> MetricInfo:
    """Info of a metric key, resolving per-class keys (``dice_2`` -> ``dice``).

    Raises:
        KeyError: for a key that is not a registered metric (the message lists them).
    """
    if key in METRICS:
        return METRICS[key]
    for base in METRICS.values():
        if base.per_class_key and (m := _per_class_pattern(base.name, base.per_class_key).match(key)):
            return replace(base, name=key, description=f"{base.description} (class {m['c']})")
    raise KeyError(f"unknown metric {key!r}; known: {', '.join(METRICS)}")


def metric_bounds(key: str) -> tuple[float, float]:
    """``(lo, hi)`` of a metric key (per-class keys included): the values it can take by its
    definition; ``(-inf, inf)`` for a key that is not a registered metric (a table's own column)."""
    try:
        return metric_info(key).bounds
    except KeyError:
        return UNBOUNDED


def is_metric(key: str) -> bool:
    """True for a registered metric key or a per-class key of one."""
    try:
        metric_info(key)
    except KeyError:
        return False
    return True


def higher_is_better(key: str) -> bool:
    """Direction of ``key`` (per-class keys included)."""
    return metric_info(key).higher_is_better
