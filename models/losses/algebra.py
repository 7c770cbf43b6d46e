"""Loss algebra: the weighted sum behind composite loss names such as ``"dice_ce+0.5*mip"``.

The names are parsed and looked up by :func:`models.registry.parse_loss_name`;
:func:`models.factory.create_loss` builds the terms and joins them here.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightedSumLoss(nn.Module):
    """``sum_i w_i * loss_i(logits, target)`` over losses sharing the ``(logits, target)`` convention.

    Args:
        terms: ``(weight, name, loss module)`` per term; the names are kept for logging.
    """

    def __init__(self, terms: list[tuple[float, str, nn.Module]]) -> None:
        super().__init__()
        self.weights = [w for w, _, _ in terms]
        self.names = [n for _, n, _ in terms]
        self.terms = nn.ModuleList([m for _, _, m in terms])

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1 or R, *spatial)`` -> scalar."""
        total = logits.new_zeros(())
        for w, term in zip(self.weights, self.terms, strict=True):
            total = total + w * term(logits, target)
        return total
