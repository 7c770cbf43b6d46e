"""Attention Swin U-Net: Swin-Unet whose decoder re-uses the encoder's attention (cross-contextual).

Aghdam et al., "Attention Swin U-Net: Cross-Contextual Attention Mechanism for Skin Lesion
Segmentation", ISBI 2023, https://arxiv.org/abs/2210.16898, built on Swin-Unet (Cao et al. 2021,
https://arxiv.org/abs/2105.05537).

Swin-Unet: 4×4 patch embedding, four stages of shifted-window transformer blocks (MONAI
``BasicLayer``) with patch merging, a mirrored decoder with patch expanding, concatenated skips
(projected back by a linear layer) and a final 4× patch expanding + 1×1 convolution.

The cross-contextual attention of the paper: every window-attention block of the decoder adds the
attention weights of the encoder block at the same level and depth (same windows, same shift,
same heads) to its own softmax weights before they mix the values,
``out = (softmax(q kᵀ / √d + B) + A_enc) v`` (the ``operation='+'`` of the authors' code), so
the skip path carries *where the encoder looked* as well as what it saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets.swin_unetr import BasicLayer, PatchEmbed, PatchMergingV2, WindowAttention
from monai.utils import ensure_tuple_rep
from torch import nn

from models.layers.conv import conv
from models.layers.padding import crop_to, pad_to_multiple
from models.layers.tokens import PatchExpand, channels_first, channels_last
from models.registry import register_model


class ContextWindowAttention(WindowAttention):
    """MONAI's window attention (relative position bias) that records its weights and adds a context.

    Before a forward pass, ``context`` may hold attention weights ``(B * n_windows, heads, N, N)``
    of another block with the same windows; they are added to this block's softmax weights.
    After the pass, ``weights`` holds this block's own softmax weights (with gradient).
    """

    def __init__(self, dim: int, num_heads: int, window_size: Sequence[int], qkv_bias: bool = True) -> None:
        super().__init__(dim, num_heads, window_size, qkv_bias=qkv_bias)
        self.context: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x (B * n_windows, N, C)``; ``mask (n_windows, N, N)`` additive (shifted windows) or None."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        index = self.relative_position_index.clone()[:n, :n].reshape(-1)
        bias = self.relative_position_bias_table[index].reshape(n, n, -1).permute(2, 0, 1)
        logits = (q * self.scale) @ k.transpose(-2, -1) + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            logits = logits.view(b // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            logits = logits.view(-1, self.num_heads, n, n)
        self.weights = logits.softmax(dim=-1)
        attn = self.weights if self.context is None else self.weights + self.context
        out = (self.attn_drop(attn) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


def _swin_layer(
    dim: int, depth: int, heads: int, window: Sequence[int], drop_path: list[float], merge: bool
) -> BasicLayer:
    """MONAI Swin stage (channels-first in and out) whose blocks use :class:`ContextWindowAttention`."""
    layer = BasicLayer(
        dim=dim,
        depth=depth,
        num_heads=heads,
        window_size=window,
        drop_path=drop_path,
        qkv_bias=True,
        downsample=PatchMergingV2 if merge else None,
    )
    for block in layer.blocks:
        block.attn = ContextWindowAttention(dim, heads, window)
    return layer


class AttSwinUNet(nn.Module):
    """Swin-Unet with cross-contextual attention: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.

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
        window_size: Sequence[int],
        patch_size: int,
        drop_path: float,
        cross_contextual: bool = True,
    ) -> None:
        super().__init__()
        n, sd = len(depths), spatial_dims
        dims = [embed_dim * 2**i for i in range(n)]
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        start = [sum(depths[:i]) for i in range(n)]
        self.cross_contextual = cross_contextual
        self.factor = patch_size * 2 ** (n - 1)
        self.embed = PatchEmbed(patch_size, in_channels, embed_dim, nn.LayerNorm, spatial_dims=sd)
        self.encoder = nn.ModuleList(
            _swin_layer(
                dims[i],
                depths[i],
                num_heads[i],
                window_size,
                rates[start[i] : start[i] + depths[i]],
                i < n - 1,
            )
            for i in range(n)
        )
        self.norm = nn.LayerNorm(dims[-1])
        self.expands = nn.ModuleList(PatchExpand(dims[i + 1], dims[i], (2,) * sd) for i in range(n - 1))
        self.fuse = nn.ModuleList(nn.Linear(2 * dims[i], dims[i]) for i in range(n - 1))
        self.decoder = nn.ModuleList(
            _swin_layer(
                dims[i], depths[i], num_heads[i], window_size, rates[start[i] : start[i] + depths[i]], False
            )
            for i in range(n - 1)
        )
        self.norm_up = nn.LayerNorm(embed_dim)
        self.final_expand = PatchExpand(embed_dim, embed_dim, (patch_size,) * sd)
        self.head = conv(sd, embed_dim, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``."""
        spatial = x.shape[2:]
        x = self.embed(pad_to_multiple(x, self.factor))
        skips = []
        for layer in self.encoder:
            skips.append(x)  # the stage input is the skip (Swin-Unet layout)
            x = layer(x)
        x = self.norm(channels_last(x))
        try:
            for i in reversed(range(len(self.decoder))):
                x = self.fuse[i](torch.cat([self.expands[i](x), channels_last(skips[i])], dim=-1))
                for enc, dec in zip(self.encoder[i].blocks, self.decoder[i].blocks):
                    dec.attn.context = enc.attn.weights if self.cross_contextual else None
                x = channels_last(self.decoder[i](channels_first(x)))
        finally:
            for layer in [*self.encoder, *self.decoder]:
                for block in layer.blocks:
                    block.attn.context = block.attn.weights = None
        return crop_to(self.head(channels_first(self.final_expand(self.norm_up(x)))), spatial)


@register_model(
    "att_swin_unet",
    family="transformer",
    dims=(2, 3),
    description="Attention Swin U-Net: Swin-Unet whose decoder adds the encoder's attention weights",
    paper="https://arxiv.org/abs/2210.16898",
    small={"embed_dim": 12, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8), "window_size": 4},
    options="embed_dim depths num_heads window_size patch_size drop_path cross_contextual",
    encoder="encoder",
)
def att_swin_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    embed_dim: int = 96,
    depths: Sequence[int] = (2, 2, 6, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    window_size: int | Sequence[int] = 7,
    patch_size: int = 4,
    drop_path: float = 0.1,
    cross_contextual: bool = True,
) -> nn.Module:
    """Attention Swin U-Net at the paper's size (Swin-T: embed 96, depths 2-2-6-2, window 7).

    ``cross_contextual=False`` gives plain Swin-Unet (the paper's ablation baseline).
    """
    if len(depths) != len(num_heads):
        raise ValueError(
            f"att_swin_unet: depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length"
        )
    window = ensure_tuple_rep(window_size, spatial_dims)
    return AttSwinUNet(
        spatial_dims,
        in_channels,
        out_channels,
        embed_dim,
        depths,
        num_heads,
        window,
        patch_size,
        drop_path,
        cross_contextual,
    )
