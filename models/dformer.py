"""D-Former: a U-shaped dilated transformer (local and dilated global self-attention).

Wu et al., "D-Former: A U-shaped Dilated Transformer for 3D Medical Image Segmentation",
Neural Computing and Applications 2022, https://arxiv.org/abs/2201.00462.

Each D-Former block attends within groups of ``group_size`` tokens. Blocks alternate between
the *local scope module* (a group is a contiguous window) and the *global scope module* (a group
takes every ``n``-th token along each axis, ``n = size / group``, so it spans the whole map like a
dilated kernel). Each stage starts with a dynamic position encoding (a residual depth-wise 3×3(×3)
convolution). Patch embedding, patch merging and patch expanding follow Swin-Unet; the decoder
mirrors the encoder with concatenated skips. The layers here work in 2D and 3D alike.

:class:`PatchExpand` (channels-last 2× upsampling) is shared with :mod:`models.att_swin_unet`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import MLPBlock, SABlock
from monai.networks.layers import Conv
from monai.networks.nets.swin_unetr import PatchMergingV2
from monai.utils import ensure_tuple_rep
from torch import nn

from models.registry import register_model


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *S)`` -> ``(B, *S, C)``."""
    return x.movedim(1, -1)


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """``(B, *S, C)`` -> ``(B, C, *S)``."""
    return x.movedim(-1, 1)


def pad_to_multiple(x: torch.Tensor, factor: int | Sequence[int]) -> torch.Tensor:
    """Zero-pads ``x (B, C, *S)`` on the high side of each axis to a multiple of ``factor`` (per axis)."""
    pad = [(-s) % f for s, f in zip(x.shape[2:], ensure_tuple_rep(factor, x.ndim - 2))]
    if any(pad):
        x = F.pad(x, [p for q in reversed(pad) for p in (0, q)])
    return x


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


class DilatedTransformerBlock(nn.Module):
    """Pre-norm transformer block with grouped self-attention, ``(B, *S, C)`` -> same shape.

    ``dilated=False`` is the local scope module, ``True`` the global (dilated) scope module.
    The map is zero-padded to a multiple of the group size and padded tokens are masked out of
    the attention; on axes shorter than the group, the group is the whole axis.
    """

    def __init__(
        self, dim: int, num_heads: int, group_size: Sequence[int], dilated: bool, mlp_ratio: float = 4.0
    ) -> None:
        super().__init__()
        self.group_size, self.dilated = tuple(group_size), dilated
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SABlock(dim, num_heads, qkv_bias=True)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act="GELU")

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        b, *size, _ = x.shape
        group = [min(g, s) for g, s in zip(self.group_size, size)]
        pad = [(-s) % g for s, g in zip(size, group)]
        valid = torch.ones(1, *size, 1, dtype=x.dtype, device=x.device)
        if any(pad):
            flat = [0, 0] + [p for q in reversed(pad) for p in (0, q)]
            x, valid = F.pad(x, flat), F.pad(valid, flat)
        padded = x.shape[1:-1]
        tokens = group_tokens(x, group, self.dilated)
        mask = None
        if any(pad):
            mask = group_tokens(valid, group, self.dilated)[..., 0].repeat(b, 1) > 0
        out = ungroup_tokens(self.attn(tokens, attn_mask=mask), group, self.dilated, b, padded)
        return out[(slice(None), *(slice(0, s) for s in size))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attend(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DFormerStage(nn.Module):
    """Dynamic position encoding, then ``depth`` blocks alternating local / dilated; channels-last."""

    def __init__(
        self, spatial_dims: int, dim: int, depth: int, num_heads: int, group_size: Sequence[int]
    ) -> None:
        super().__init__()
        self.dpe = Conv[Conv.CONV, spatial_dims](dim, dim, kernel_size=3, padding=1, groups=dim)
        self.blocks = nn.ModuleList(
            DilatedTransformerBlock(dim, num_heads, group_size, dilated=i % 2 == 1) for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, *S, C)`` -> ``(B, *S, C)``."""
        x = x + channels_last(self.dpe(channels_first(x)))
        for block in self.blocks:
            x = block(x)
        return x


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
        b, *size, _ = x.shape
        d = len(size)
        x = self.expand(x).reshape(b, *size, *self.scale, self.out_dim)
        perm = [0] + [v for i in range(d) for v in (1 + i, 1 + d + i)] + [2 * d + 1]
        x = x.permute(*perm).reshape(b, *(s * r for s, r in zip(size, self.scale)), self.out_dim)
        return self.norm(x)


class DFormer(nn.Module):
    """U-shaped dilated transformer; ``forward(x (B, in_channels, *S))`` -> logits ``(B, out_channels, *S)``.

    Inputs whose size is not a multiple of ``patch_size * 2**(len(depths) - 1)`` are zero-padded
    on the high side and the logits cropped back.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        patch_size: Sequence[int],
        group_size: Sequence[int],
    ) -> None:
        super().__init__()
        sd, n = spatial_dims, len(depths)
        dims = [embed_dim * 2**i for i in range(n)]
        self.factor = [p * 2 ** (n - 1) for p in patch_size]
        self.embed = Conv[Conv.CONV, sd](in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.encoder = nn.ModuleList(
            DFormerStage(sd, dims[i], depths[i], num_heads[i], group_size) for i in range(n)
        )
        self.merges = nn.ModuleList(PatchMergingV2(dims[i], spatial_dims=sd) for i in range(n - 1))
        self.norm = nn.LayerNorm(dims[-1])
        self.expands = nn.ModuleList(PatchExpand(dims[i + 1], dims[i], (2,) * sd) for i in range(n - 1))
        self.fuse = nn.ModuleList(nn.Linear(2 * dims[i], dims[i]) for i in range(n - 1))
        self.decoder = nn.ModuleList(
            DFormerStage(sd, dims[i], depths[i], num_heads[i], group_size) for i in range(n - 1)
        )
        self.norm_up = nn.LayerNorm(embed_dim)
        self.final_expand = PatchExpand(embed_dim, embed_dim, patch_size)
        self.head = Conv[Conv.CONV, sd](embed_dim, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        x = self.embed_norm(channels_last(self.embed(pad_to_multiple(x, self.factor))))
        skips = []
        for i, stage in enumerate(self.encoder):
            skips.append(x)  # the stage input is the skip (Swin-Unet layout)
            x = stage(x)
            if i < len(self.merges):
                x = self.merges[i](x)
        x = self.norm(x)
        for i in reversed(range(len(self.decoder))):
            x = self.fuse[i](torch.cat([self.expands[i](x), skips[i]], dim=-1))
            x = self.decoder[i](x)
        logits = self.head(channels_first(self.final_expand(self.norm_up(x))))
        return logits[(..., *(slice(0, s) for s in spatial))]


_PATCH = {2: (4, 4), 3: (2, 4, 4)}
_GROUP = {2: (8, 8), 3: (2, 8, 8)}


@register_model(
    "dformer",
    family="transformer",
    dims=(2, 3),
    description="D-Former: U-shaped transformer alternating local and dilated global group attention",
    paper="https://arxiv.org/abs/2201.00462",
    small={"embed_dim": 12, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8)},
    fixed_input_size=False,
    encoder="encoder",
)
def dformer(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    embed_dim: int = 96,
    depths: Sequence[int] = (2, 2, 6, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    patch_size: int | Sequence[int] | None = None,
    group_size: int | Sequence[int] | None = None,
) -> nn.Module:
    """D-Former at the paper's size (embed 96, depths 2-2-6-2, heads 3-6-12-24).

    ``patch_size`` defaults to the paper's ``(2, 4, 4)`` in 3D (``(4, 4)`` in 2D); ``group_size``
    (tokens per attention group per axis) to ``(2, 8, 8)`` in 3D (``(8, 8)`` in 2D).
    """
    if len(depths) != len(num_heads):
        raise ValueError(f"dformer: depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length")
    patch = ensure_tuple_rep(patch_size if patch_size is not None else _PATCH[spatial_dims], spatial_dims)
    group = ensure_tuple_rep(group_size if group_size is not None else _GROUP[spatial_dims], spatial_dims)
    return DFormer(spatial_dims, in_channels, out_channels, embed_dim, depths, num_heads, patch, group)
