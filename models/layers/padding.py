"""Padding to a multiple of a network's total stride, and cropping back.

Nets whose resolution halves ``n`` times need spatial sizes divisible by ``2**n``: they zero-pad
the input on the high side of each axis and crop the logits back to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def padding_to_multiple(spatial: Sequence[int], factor: int | Sequence[int]) -> list[int]:
    """High-side padding that makes each entry of ``spatial`` a multiple of ``factor`` (int or per axis)."""
    factors = [factor] * len(spatial) if isinstance(factor, int) else list(factor)
    return [(-s) % f for s, f in zip(spatial, factors)]


def pad_to_multiple(x: torch.Tensor, factor: int | Sequence[int]) -> torch.Tensor:
    """Zero-pad ``x (B, C, *S)`` on the high side of each axis to a multiple of ``factor`` (int or per axis).

    Returns ``x`` itself when no axis needs padding.
    """
    pad = padding_to_multiple(x.shape[2:], factor)
    if any(pad):
        x = F.pad(x, [p for q in reversed(pad) for p in (0, q)])
    return x


def crop_to(x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """The low corner ``(B, C, *spatial)`` of ``x (B, C, *S)`` with ``S >= spatial`` (undoes the padding)."""
    return x[(..., *(slice(0, s) for s in spatial))]
