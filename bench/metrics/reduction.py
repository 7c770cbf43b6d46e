"""The one reduction over cases, used by records, the leaderboard, tuning and tracking.

Like MONAI's ``do_metric_reduction`` it states what happens to the values that are not finite:

- NaN (both masks empty, the metric is undefined for that case) is left out and counted
  (``n_nan``);
- ``±inf`` (HD95 with a missed structure) stays in: the mean and std are then infinite, so a
  score never improves by missing a structure; the median is the median of all non-NaN values;
  ``n_inf`` counts them.

``std`` is the sample standard deviation (``ddof=1``; 0 for a single value).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

import numpy as np

from bench.metrics.registry import is_metric, metric_info


class Reduction(TypedDict):
    """Summary of one metric over cases."""

    mean: float
    std: float
    median: float
    n: int
    n_nan: int
    n_inf: int


def reduce_values(values: Iterable[float] | np.ndarray) -> Reduction:
    """Mean, std (ddof=1), median, n (non-NaN count), n_nan and n_inf of ``values``.

    ``values``: 1D sequence of floats (``None`` counts as NaN). Infinite values propagate into the
    mean and std (which are then ``±inf``); NaN values are excluded and counted.
    """
    v = np.asarray([math.nan if x is None else x for x in values], dtype=np.float64).ravel()
    nan = np.isnan(v)
    kept = v[~nan]
    n, n_inf = int(kept.size), int(np.isinf(kept).sum())
    if n == 0:
        mean = std = median = math.nan
    else:
        with np.errstate(invalid="ignore"):
            mean = float(np.mean(kept)) if n_inf == 0 else _inf_mean(kept)
            median = float(np.median(kept))
            if n_inf:
                std = math.inf if n > 1 else 0.0
            else:
                std = float(np.std(kept, ddof=1)) if n > 1 else 0.0
    return Reduction(mean=mean, std=std, median=median, n=n, n_nan=int(nan.sum()), n_inf=n_inf)


def _inf_mean(kept: np.ndarray) -> float:
    pos, neg = bool(np.isposinf(kept).any()), bool(np.isneginf(kept).any())
    return math.nan if pos and neg else (math.inf if pos else -math.inf)


def reduce_cases(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
) -> dict[str, Reduction]:
    """``{metric: Reduction}`` over per-case rows (``case_id`` plus metric values).

    ``keys`` defaults to every numeric key of the rows, in first-seen order; a case without a
    key counts as NaN for it.
    """
    if keys is None:
        seen: dict[str, None] = {}
        for row in rows:
            for k, v in row.items():
                if k != "case_id" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    seen.setdefault(k, None)
        keys = list(seen)
    return {k: reduce_values([row.get(k, math.nan) for row in rows]) for k in keys}


def objective_value(rows: Sequence[Mapping[str, Any]], key: str) -> float:
    """The mean of metric ``key`` over cases as a tuning score (by :func:`reduce_values`).

    A missed structure (HD95 = inf) makes the score infinite, i.e. the worst for a metric where
    lower is better; a key with no defined value on any case gives its registered worst value,
    so it never looks good.
    """
    stats = reduce_values([row.get(key, math.nan) for row in rows])
    if math.isnan(stats["mean"]) and is_metric(key):
        return metric_info(key).worst
    return stats["mean"]
