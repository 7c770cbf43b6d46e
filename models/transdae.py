"""TransDAE: hierarchical transformer with dual (spatial + channel) efficient attention.

Azad, Adibfar and Fu, "TransDAE: Dual Attention Mechanism in a Hierarchical Transformer for
Efficient Medical Image Segmentation", 2024, https://arxiv.org/abs/2409.02018 (built on
DAE-Former, Azad et al. 2023, https://arxiv.org/abs/2212.13504).

- Encoder: overlapping patch embeddings (7×7 stride 4, then 3×3 stride 2) and, per stage, dual
  attention transformer blocks. A block has a *channel* pathway, the efficient attention of Shen
  et al. (https://arxiv.org/abs/1812.01243: keys soft-maxed over tokens summarise the map into a
  ``d_k × d_v`` channel context that queries read, linear in the token count), and a *spatial*
  pathway, multi-head self-attention whose keys and values come from a map reduced by a strided
  convolution (spatial reduction, PVT), each followed by a Mix-FFN (linear, depth-wise 3×3, GELU,
  linear).
- Skips: the inter-scale interaction module fuses the upsampled decoder features with the encoder
  features (linear on the concatenation) and re-weights them with a decomposed large-kernel
  attention (depth-wise 5×5, depth-wise 7×7 dilated 3, 1×1; VAN, https://arxiv.org/abs/2202.09741).
- Decoder: patch expanding (:class:`models.layers.tokens.PatchExpand`), dual attention blocks per
  level, a final 4× patch expanding and a 1×1 convolution.

All layers are written for 2D and 3D alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.layers.conv import conv
from models.layers.tokens import PatchExpand, channels_first, channels_last
from models.registry import register_model


class MixFFN(nn.Module):
    """Linear ``C -> hidden``, depth-wise 3×3(×3) conv, GELU, linear back; ``(B, *S, C)`` -> same."""

    def __init__(self, spatial_dims: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.dw = conv(spatial_dims, hidden, hidden, kernel_size=3, padding=1, groups=hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, *S, C)`` -> same shape."""
        return self.fc2(F.gelu(channels_last(self.dw(channels_first(self.fc1(x))))))


class EfficientChannelAttention(nn.Module):
    """Efficient attention (Shen et al.): ``out = softmax_c(Q) · (softmax_n(K)ᵀ V)``; ``(B, *S, C)`` -> same.

    The ``heads`` contexts ``softmax_n(K)ᵀ V`` are ``(C/heads) × (C/heads)`` channel matrices
    pooled over all tokens, so the cost is linear in the number of tokens.
    """

    def __init__(self, dim: int, heads: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"efficient attention: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, *S, C)`` -> same shape."""
        shape = x.shape
        b, c = shape[0], shape[-1]
        q, k, v = self.qkv(x.reshape(b, -1, c)).reshape(b, -1, 3, self.heads, c // self.heads).unbind(2)
        q = q.softmax(dim=-1)  # over the channels of each token
        k = k.softmax(dim=1)  # over the tokens of each channel
        context = torch.einsum("bnhk,bnhv->bhkv", k, v)
        out = torch.einsum("bnhk,bhkv->bnhv", q, context).reshape(b, -1, c)
        return self.proj(out).reshape(shape)


class SpatialReductionAttention(nn.Module):
    """Multi-head self-attention over tokens with keys/values from a ``ratio``× strided-conv reduced map.

    ``(B, *S, C)`` -> same; ``ratio=1`` is plain global self-attention.
    """

    def __init__(self, spatial_dims: int, dim: int, heads: int, ratio: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"spatial attention: dim {dim} is not divisible by heads {heads}")
        self.heads, self.ratio = heads, ratio
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.reduce = conv(spatial_dims, dim, dim, kernel_size=ratio, stride=ratio) if ratio > 1 else None
        self.norm = nn.LayerNorm(dim) if ratio > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, *S, C)`` -> same shape."""
        shape = x.shape
        b, c = shape[0], shape[-1]
        kv_src = x
        if self.reduce is not None and min(shape[1:-1]) >= self.ratio:
            kv_src = channels_last(self.reduce(channels_first(x)))
        q = self.q(x.reshape(b, -1, c)).reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)
        kv = self.kv(self.norm(kv_src.reshape(b, -1, c))).reshape(b, -1, 2, self.heads, c // self.heads)
        k, v = kv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        return self.proj(out).reshape(shape)


class DualAttentionBlock(nn.Module):
    """Channel pathway then spatial pathway, each pre-norm residual + Mix-FFN; ``(B, *S, C)`` -> same."""

    def __init__(self, spatial_dims: int, dim: int, heads: int, ratio: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))
        self.channel = EfficientChannelAttention(dim)
        self.spatial = SpatialReductionAttention(spatial_dims, dim, heads, ratio)
        self.ffn1 = MixFFN(spatial_dims, dim, mlp_ratio * dim)
        self.ffn2 = MixFFN(spatial_dims, dim, mlp_ratio * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, *S, C)`` -> same shape."""
        x = x + self.channel(self.norms[0](x))
        x = x + self.ffn1(self.norms[1](x))
        x = x + self.spatial(self.norms[2](x))
        return x + self.ffn2(self.norms[3](x))


class InterScaleInteraction(nn.Module):
    """Skip fusion ``y = f * LKA(f)``, ``f = Linear([decoder, encoder])``: two ``(B, *S, C)`` -> one."""

    def __init__(self, spatial_dims: int, dim: int) -> None:
        super().__init__()
        self.fuse = nn.Linear(2 * dim, dim)
        self.lka = nn.Sequential(
            conv(spatial_dims, dim, dim, kernel_size=5, padding=2, groups=dim),
            conv(spatial_dims, dim, dim, kernel_size=7, padding=9, dilation=3, groups=dim),
            conv(spatial_dims, dim, dim, kernel_size=1),
        )

    def forward(self, decoder: torch.Tensor, encoder: torch.Tensor) -> torch.Tensor:
        """``decoder (B, *S, C)``, ``encoder (B, *S, C)`` -> ``(B, *S, C)``."""
        f = self.fuse(torch.cat([decoder, encoder], dim=-1))
        return f * channels_last(self.lka(channels_first(f)))


@register_model(
    "transdae",
    family="transformer",
    dims=(2, 3),
    description="TransDAE: hierarchical transformer with efficient channel + spatial-reduction attention",
    paper="https://arxiv.org/abs/2409.02018",
    small={"dims": (16, 32, 64), "depths": (1, 1, 1), "heads": (1, 1, 2)},
    options="dims depths heads ratios",
    encoder="encoder",
)
class TransDAE(nn.Module):
    """Dual-attention hierarchical transformer U-Net: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.

    Defaults: the DAE-Former size TransDAE builds on (widths 128-320-512, two blocks per level).
    Every spatial size must be divisible by ``4 * 2**(len(dims) - 1)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        dims, depths: width and dual-attention blocks per level.
        heads: spatial-attention heads per level (64 channels each at the default size).
        ratios: spatial-reduction factors of the keys and values per level.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        dims: Sequence[int] = (128, 320, 512),
        depths: Sequence[int] = (2, 2, 2),
        heads: Sequence[int] = (2, 5, 8),
        ratios: Sequence[int] = (4, 2, 1),
    ) -> None:
        super().__init__()
        sd, n = spatial_dims, len(dims)
        if not len(depths) == len(heads) == len(ratios) == n:
            raise ValueError(
                f"transdae: dims, depths, heads, ratios differ in length: {dims}, {depths}, {heads}"
            )
        self.factor = 4 * 2 ** (n - 1)
        self.embeds = nn.ModuleList(
            conv(sd, in_channels, dims[0], kernel_size=7, stride=4, padding=3)
            if i == 0
            else conv(sd, dims[i - 1], dims[i], kernel_size=3, stride=2, padding=1)
            for i in range(n)
        )
        self.embed_norms = nn.ModuleList(nn.LayerNorm(d) for d in dims)

        def stage(i: int) -> nn.Sequential:
            return nn.Sequential(
                *(DualAttentionBlock(sd, dims[i], heads[i], ratios[i]) for _ in range(depths[i]))
            )

        self.encoder = nn.ModuleList(stage(i) for i in range(n))
        self.enc_norms = nn.ModuleList(nn.LayerNorm(d) for d in dims)
        self.expands = nn.ModuleList(PatchExpand(dims[i + 1], dims[i], (2,) * sd) for i in range(n - 1))
        self.skips = nn.ModuleList(InterScaleInteraction(sd, dims[i]) for i in range(n - 1))
        self.decoder = nn.ModuleList(stage(i) for i in range(n - 1))
        self.final_expand = PatchExpand(dims[0], dims[0], (4,) * sd)
        self.head = conv(sd, dims[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``."""
        bad = [s for s in x.shape[2:] if s % self.factor]
        if bad:
            raise ValueError(f"transdae: spatial size {tuple(x.shape[2:])} is not divisible by {self.factor}")
        feats = []
        for embed, norm, stage, out_norm in zip(self.embeds, self.embed_norms, self.encoder, self.enc_norms):
            x = norm(channels_last(embed(x if not feats else channels_first(feats[-1]))))
            feats.append(out_norm(stage(x)))
        x = feats[-1]
        for i in reversed(range(len(self.decoder))):
            x = self.decoder[i](self.skips[i](self.expands[i](x), feats[i]))
        return self.head(channels_first(self.final_expand(x)))
