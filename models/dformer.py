"""D-Former: a U-shaped dilated transformer (local and dilated global self-attention).

Wu et al., "D-Former: A U-shaped Dilated Transformer for 3D Medical Image Segmentation",
Neural Computing and Applications 2022, https://arxiv.org/abs/2201.00462.

Each D-Former block attends within groups of ``group_size`` tokens. Blocks alternate between
the *local scope module* (a group is a contiguous window) and the *global scope module* (a group
takes every ``n``-th token along each axis, ``n = size / group``, so it spans the whole map like a
dilated kernel). Each stage starts with a dynamic position encoding (a residual depth-wise 3×3(×3)
convolution). Patch embedding, patch merging and patch expanding follow Swin-Unet; the decoder
mirrors the encoder with concatenated skips. The layers here work in 2D and 3D alike.

Token grouping and patch expanding come from :mod:`models.layers.tokens`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import MLPBlock, SABlock
from monai.networks.nets.swin_unetr import PatchMergingV2
from monai.utils import ensure_tuple_rep
from torch import nn

from models.layers.conv import conv
from models.layers.padding import crop_to, pad_to_multiple
from models.layers.tokens import PatchExpand, channels_first, channels_last, group_tokens, ungroup_tokens
from models.registry import register_model


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
        """``x (B, *S, C)`` channels-last -> same shape."""
        x = x + self._attend(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DFormerStage(nn.Module):
    """Dynamic position encoding, then ``depth`` blocks alternating local / dilated; channels-last."""

    def __init__(
        self, spatial_dims: int, dim: int, depth: int, num_heads: int, group_size: Sequence[int]
    ) -> None:
        super().__init__()
        self.dpe = conv(spatial_dims, dim, dim, kernel_size=3, padding=1, groups=dim)
        self.blocks = nn.ModuleList(
            DilatedTransformerBlock(dim, num_heads, group_size, dilated=i % 2 == 1) for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, *S, C)`` -> ``(B, *S, C)``."""
        x = x + channels_last(self.dpe(channels_first(x)))
        for block in self.blocks:
            x = block(x)
        return x


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
        self.embed = conv(sd, in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
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
        self.head = conv(sd, embed_dim, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``."""
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
        return crop_to(self.head(channels_first(self.final_expand(self.norm_up(x)))), spatial)


_PATCH = {2: (4, 4), 3: (2, 4, 4)}
_GROUP = {2: (8, 8), 3: (2, 8, 8)}


@register_model(
    "dformer",
    family="transformer",
    dims=(2, 3),
    description="D-Former: U-shaped transformer alternating local and dilated global group attention",
    paper="https://arxiv.org/abs/2201.00462",
    small={"embed_dim": 12, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8)},
    options="embed_dim depths num_heads patch_size group_size",
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
