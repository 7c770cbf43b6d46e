"""Partial cross-entropy for scribble labels (Tang et al., ECCV 2018, https://arxiv.org/abs/1804.01346).

Calling convention as every registered loss (:mod:`models.losses`) except that ``target`` holds
255 on unlabelled (unscribbled) voxels: ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)``
int64 in ``[0, C)`` or 255 -> scalar. Mode: multiclass-softmax.
"""

from __future__ import annotations

import torch
from torch import nn

from models.registry import register_loss
from models.schemes.functional import IGNORE_INDEX, partial_cross_entropy


class PartialCrossEntropyLoss(nn.Module):
    """Cross-entropy over scribbled voxels only (:func:`models.schemes.functional.partial_cross_entropy`).

    Mean over the voxels whose label is not ``ignore_index``; a batch with none gives 0 with a
    gradient path (not NaN).
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` (255 = unlabelled) -> scalar."""
        return partial_cross_entropy(logits, target, self.ignore_index)


@register_loss("partial_ce", description="cross-entropy over scribbled voxels only (label 255 ignored)")
def partial_ce_loss(ignore_index: int = IGNORE_INDEX) -> nn.Module:
    """Partial CE for scribble supervision; see :class:`PartialCrossEntropyLoss`."""
    return PartialCrossEntropyLoss(ignore_index=ignore_index)
