"""Thin accumulators: ``update`` collects sufficient statistics, ``compute`` calls the pure
functions. No metric maths lives here."""

from __future__ import annotations

import torch

from bench.metrics._convert import ArrayLike
from bench.metrics.functional import _dice_compute, stat_scores


class DiceAccumulator:
    """Per-case, per-class Dice from stored (tp, |P|, |G|) statistics.

    ``update`` takes one-hot/binary batches ``(B, C, H, W[, D])``; ``compute`` returns the
    ``(N, C)`` per-case Dice (NaN where both empty) via the same ``_dice_compute``.
    """

    def __init__(self) -> None:
        self.stats: list[tuple[torch.Tensor, ...]] = []

    def update(self, preds: ArrayLike, target: ArrayLike) -> None:
        """Stores the ``(B, C)`` counts of one batch (moved to the CPU)."""
        self.stats.append(tuple(s.detach().cpu() for s in stat_scores(preds, target)))

    def compute(self) -> torch.Tensor:
        """``(N, C)`` Dice of every stored case, N = the batch sizes summed."""
        tp, ps, ts = (torch.cat(parts) for parts in zip(*self.stats))
        return _dice_compute(tp, ps, ts)
