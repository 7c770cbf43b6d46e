"""Thin accumulators: ``update`` collects per-case rows or sufficient statistics,
``compute`` calls the pure functions. No metric maths lives here."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.metrics._convert import ArrayLike
from bench.metrics.calibration import _ece_compute, calibration_stats
from bench.metrics.case import evaluate_case
from bench.metrics.functional import _dice_compute, stat_scores
from bench.metrics.reduction import reduce_cases


class CaseMetrics:
    """Collects one :func:`evaluate_case` row per case.

    Args:
        **case_kwargs: keyword arguments forwarded to every ``evaluate_case`` call
            (``spacing`` and ``fov`` can also be given per case to :meth:`update`).
    """

    def __init__(self, **case_kwargs: Any) -> None:
        self.case_kwargs = case_kwargs
        self.rows: list[dict[str, Any]] = []

    def update(self, case_id: str, prob_or_pred: ArrayLike, gt: ArrayLike, **kwargs: Any) -> dict[str, float]:
        """Evaluates one case, stores and returns its row (``case_id`` plus metric values)."""
        row = evaluate_case(prob_or_pred, gt, **{**self.case_kwargs, **kwargs})
        self.rows.append({"case_id": case_id, **row})
        return row

    def compute(self) -> dict[str, float]:
        """Mean of every metric over cases by the one reduction (:func:`reduce_cases`): NaN cases
        left out (``nan`` if all are NaN), an infinite value makes the mean infinite."""
        return {k: stats["mean"] for k, stats in reduce_cases(self.rows).items()}

    def reset(self) -> None:
        self.rows = []


class DiceAccumulator:
    """Per-case, per-class Dice from stored (tp, |P|, |G|) statistics.

    ``update`` takes one-hot/binary batches ``(B, C, H, W[, D])``; ``compute`` returns the
    ``(N, C)`` per-case Dice (NaN where both empty) via the same ``_dice_compute``.
    """

    def __init__(self) -> None:
        self.stats: list[tuple[torch.Tensor, ...]] = []

    def update(self, preds: ArrayLike, target: ArrayLike) -> None:
        self.stats.append(tuple(s.detach().cpu() for s in stat_scores(preds, target)))

    def compute(self) -> torch.Tensor:
        tp, ps, ts = (torch.cat(parts) for parts in zip(*self.stats))
        return _dice_compute(tp, ps, ts)

    def reset(self) -> None:
        self.stats = []


class CalibrationAccumulator:
    """Dataset-level (pooled) ECE from per-bin statistics summed over cases."""

    def __init__(self, n_bins: int = 15) -> None:
        self.n_bins = n_bins
        self.stats = np.zeros((3, n_bins + 1), dtype=np.float64)

    def update(self, prob: ArrayLike, target: ArrayLike, mask: ArrayLike | None = None) -> None:
        self.stats += calibration_stats(prob, target, n_bins=self.n_bins, mask=mask)

    def compute(self) -> float:
        return _ece_compute(self.stats)

    def reset(self) -> None:
        self.stats[:] = 0
