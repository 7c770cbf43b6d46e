"""Resizing feature maps and logits: linear interpolation in 1D, 2D and 3D alike."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Linear interpolation (``align_corners=False``) of ``x (B, C, *spatial)`` to ``(B, C, *size)``.

    Returns ``x`` itself when it already has that size.
    """
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=_INTERP[x.dim() - 2], align_corners=False)
