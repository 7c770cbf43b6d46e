"""Metric registry: what each per-case metric key means and which direction is better.

A leaf module (no imports of the metric code): ``evaluate_case``, the one reduction, tuning and
the leaderboard all read a metric's direction from here. Per-class keys (``dice_1``,
``hd95_2``) share the direction of their base metric.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """What is known about one metric key.

    Attributes:
        name: the key in ``evaluate_case`` rows.
        higher_is_better: direction of improvement.
        description: one line for tables and docs.
        worst: the value a missed structure gets (``inf`` for distances, ``0`` for overlaps).
    """

    name: str
    higher_is_better: bool
    description: str
    worst: float

    @property
    def arrow(self) -> str:
        """``↑`` or ``↓``."""
        return "↑" if self.higher_is_better else "↓"


METRICS: dict[str, MetricInfo] = {}


def register_metric(name: str, *, higher_is_better: bool, description: str, worst: float) -> MetricInfo:
    """Add a metric key; each key is registered once."""
    if name in METRICS:
        raise ValueError(f"metric {name!r} is registered twice")
    METRICS[name] = MetricInfo(name, higher_is_better, description, worst)
    return METRICS[name]


_INF = float("inf")
for _name, _up, _desc, _worst in (
    ("dice", True, "Dice similarity coefficient", 0.0),
    ("iou", True, "intersection over union (Jaccard)", 0.0),
    ("cldice", True, "centreline Dice (Shit et al. 2021)", 0.0),
    ("betti0_err", False, "|Betti-0 difference|: connected components", _INF),
    ("betti1_err", False, "|Betti-1 difference|: loops (2D) / tunnels (3D)", _INF),
    ("betti2_err", False, "|Betti-2 difference|: cavities (3D)", _INF),
    ("betti0_err_patch", False, "Betti-0 error summed over patches", _INF),
    ("betti1_err_patch", False, "Betti-1 error summed over patches", _INF),
    ("betti2_err_patch", False, "Betti-2 error summed over patches", _INF),
    ("hd95", False, "95th-percentile symmetric Hausdorff distance", _INF),
    ("nsd", True, "normalised surface Dice at the tolerance", 0.0),
    ("ece", False, "expected calibration error", 1.0),
    ("brier", False, "Brier score", 1.0),
):
    register_metric(_name, higher_is_better=_up, description=_desc, worst=_worst)

_PER_CLASS = re.compile(r"^(?P<base>.+)_(?P<c>[0-9]+)$")


def metric_info(key: str) -> MetricInfo:
    """Info of a metric key, resolving per-class keys (``dice_2`` -> ``dice``).

    Raises:
        KeyError: for a key that is not a registered metric (the message lists them).
    """
    if key in METRICS:
        return METRICS[key]
    m = _PER_CLASS.match(key)
    if m and m["base"] in METRICS:
        base = METRICS[m["base"]]
        return MetricInfo(key, base.higher_is_better, f"{base.description} (class {m['c']})", base.worst)
    raise KeyError(f"unknown metric {key!r}; known: {', '.join(METRICS)}")


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
