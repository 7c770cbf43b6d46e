"""Token helpers: channels-last layout, flattening grids to token sequences, grouping, patch expanding.

Transformers and sequence models here see a feature map either channels-last ``(B, *S, C)`` or as
a token sequence ``(B, N, C)`` with ``N = prod(S)`` in raster order. All helpers work for 2D and 3D.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *S)`` -> ``(B, *S, C)``."""
    return x.movedim(1, -1)


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """``(B, *S, C)`` -> ``(B, C, *S)``."""
    return x.movedim(-1, 1)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *S)`` -> tokens ``(B, prod(S), C)`` in raster order."""
    return x.flatten(2).transpose(1, 2)


def from_tokens(tokens: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`to_tokens`: ``(B, prod(S), C)`` -> ``(B, C, *spatial)``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *spatial)


def group_tokens(x: torch.Tensor, group: Sequence[int], dilated: bool) -> torch.Tensor:
    """Split ``x (B, *S, C)`` into groups of ``prod(group)`` tokens: ``(B * n_groups, prod(group), C)``.

    Every ``S[i]`` must be divisible by ``group[i]``. Local groups are contiguous windows; dilated
    groups collect the tokens ``S[i] / group[i]`` apart along each axis (one per window).
    """
    b, *size, c = x.shape
    counts = [s // g for s, g in zip(size, group)]
    split = [v for g, n in zip(group, counts) for v in ((g, n) if dilated else (n, g))]
    d = len(size)
    # positions of the "group index" axes and the "within-group" axes in the split shape
    outer = [1 + 2 * i + (1 if dilated else 0) for i in range(d)]
    inner = [1 + 2 * i + (0 if dilated else 1) for i in range(d)]
    x = x.reshape(b, *split, c).permute(0, *outer, *inner, 2 * d + 1)
    return x.reshape(-1, math.prod(group), c)


def ungroup_tokens(
    x: torch.Tensor, group: Sequence[int], dilated: bool, batch: int, size: Sequence[int]
) -> torch.Tensor:
    """Inverse of :func:`group_tokens`: ``(B * n_groups, prod(group), C)`` -> ``(B, *size, C)``."""
    d = len(size)
    counts = [s // g for s, g in zip(size, group)]
    x = x.reshape(batch, *counts, *group, x.shape[-1])
    perm = [0]
    for i in range(d):
        pair = (1 + d + i, 1 + i) if dilated else (1 + i, 1 + d + i)
        perm.extend(pair)
    return x.permute(*perm, 2 * d + 1).reshape(batch, *size, -1)


class PatchExpand(nn.Module):
    """Channels-last upsampling by ``scale`` per axis: ``(B, *S, C)`` -> ``(B, *(S * scale), C_out)``.

    A linear layer ``C -> prod(scale) * C_out``, a pixel shuffle, then LayerNorm (Swin-Unet).
    """

    def __init__(self, dim: int, out_dim: int, scale: Sequence[int]) -> None:
        super().__init__()
        self.scale, self.out_dim = tuple(scale), out_dim
        self.expand = nn.Linear(dim, math.prod(self.scale) * out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, *S, C)`` -> ``(B, *(S * scale), out_dim)``."""
        b, *size, _ = x.shape
        d = len(size)
        x = self.expand(x).reshape(b, *size, *self.scale, self.out_dim)
        perm = [0] + [v for i in range(d) for v in (1 + i, 1 + d + i)] + [2 * d + 1]
        x = x.permute(*perm).reshape(b, *(s * r for s, r in zip(size, self.scale)), self.out_dim)
        return self.norm(x)
