"""Tubule-sensitive CNN: a U-Net with feature recalibration and attention distillation.

Qin et al., "Learning Tubule-Sensitive CNNs for Pulmonary Airway and Artery-Vein Segmentation in
CT", IEEE TMI 2021, https://arxiv.org/abs/2012.05767 (§II).

- Backbone: a U-Net (two conv + norm + ReLU per level, max-pool down, transposed conv up,
  concatenated skips).
- Feature recalibration module (FRM, after every conv block): the map is averaged over all axes
  but one, for each axis in turn (one profile per axis, e.g. ``C×D``, ``C×H``, ``C×W``); the
  profiles are broadcast back and summed, passed through 1×1 conv, ReLU, 1×1 conv, sigmoid, and the
  result re-weights the map per channel *and* position, so thin tubes that occupy few voxels of a
  slab keep their weight.
- Attention distillation (AD, training only): each decoder level's attention map
  ``A = mean_c(F²)`` is upsampled to the next (finer) level, soft-maxed over space and pulled
  towards the next level's (detached) map by an L2 loss (:meth:`TubuleNet.aux_loss`), so coarse
  levels learn the finer levels' focus on thin branches.

The anatomical prior inputs and the distance-based loss of the paper are data-specific (lung masks,
artery/vein labels) and are not part of the network here. All layers work in 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.layers import Conv, Pool
from torch import nn

from models.layers.conv import conv, conv_norm_act
from models.layers.resize import resize_to
from models.registry import register_model


class FeatureRecalibration(nn.Module):
    """FRM ``x * sigmoid(W2 relu(W1 Σ_axis mean_over_other_axes(x)))``: ``(B, C, *S)`` -> same."""

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 2) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.excite = nn.Sequential(
            conv(spatial_dims, channels, hidden, kernel_size=1),
            nn.ReLU(),
            conv(spatial_dims, hidden, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    @staticmethod
    def project(x: torch.Tensor) -> torch.Tensor:
        """Sum of the per-axis mean profiles, broadcast back to ``x``'s shape."""
        axes = range(2, x.dim())
        total = torch.zeros_like(x)
        for keep in axes:
            total = total + x.mean(dim=tuple(a for a in axes if a != keep), keepdim=True)
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, *S)`` -> same shape."""
        return x * self.excite(self.project(x))


def _block(spatial_dims: int, cin: int, cout: int, norm: str, frm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        conv_norm_act(spatial_dims, cin, cout, 3, norm=norm),
        conv_norm_act(spatial_dims, cout, cout, 3, norm=norm),
    ]
    if frm:
        layers.append(FeatureRecalibration(spatial_dims, cout))
    return nn.Sequential(*layers)


def attention_map(x: torch.Tensor) -> torch.Tensor:
    """Activation-based attention ``mean_c(x²)``: ``(B, C, *S)`` -> ``(B, 1, *S)``."""
    return x.square().mean(dim=1, keepdim=True)


def _spatial_softmax(a: torch.Tensor) -> torch.Tensor:
    return a.flatten(1).softmax(dim=1)


@register_model(
    "tubule_net",
    family="cnn",
    dims=(2, 3),
    description="Tubule-sensitive U-Net: feature recalibration (axis projections) + attention distillation",
    paper="https://arxiv.org/abs/2012.05767",
    small={"features": (4, 8, 16, 32, 64)},
    options="features norm frm distill_weight",
    encoder="encoder",
)
class TubuleNet(nn.Module):
    """``forward(x (B, in_channels, *S))`` -> ``{"logits": (B, out_channels, *S), "aux": [attention maps]}``.

    ``aux`` holds the decoder attention maps ``(B, 1, *S_level)`` from coarse to fine (not logits:
    they are distilled by :meth:`aux_loss`). ``S`` must be divisible by ``2 ** (len(features) - 1)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        features: widths of the levels (four poolings, 16-256, by default).
        norm: MONAI norm name of the conv blocks.
        frm: feature recalibration after every conv block.
        distill_weight: weight of the attention distillation term.

    ``frm=False`` and ``distill_weight=0`` give the plain U-Net baseline of the paper's ablation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        norm: str = "instance",
        frm: bool = True,
        distill_weight: float = 0.1,
    ) -> None:
        super().__init__()
        sd, f = spatial_dims, list(features)
        self.distill_weight = distill_weight
        self.encoder = nn.ModuleList(
            _block(sd, cin, c, norm, frm) for cin, c in zip([in_channels, *f[:-1]], f)
        )
        self.pool = Pool[Pool.MAX, sd](kernel_size=2)
        up = Conv[Conv.CONVTRANS, sd]
        self.ups = nn.ModuleList(up(f[j + 1], f[j], kernel_size=2, stride=2) for j in range(len(f) - 1))
        self.decoder = nn.ModuleList(_block(sd, 2 * f[j], f[j], norm, frm) for j in range(len(f) - 1))
        self.head = conv(sd, f[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """``x (B, in_channels, *S)`` -> the dict of the class docstring."""
        skips = []
        for j, block in enumerate(self.encoder):
            x = block(x if j == 0 else self.pool(x))
            skips.append(x)
        attentions = []
        for j in reversed(range(len(self.decoder))):
            x = self.decoder[j](torch.cat([self.ups[j](x), skips[j]], dim=1))
            attentions.append(attention_map(x))
        return {"logits": self.head(x), "aux": attentions}

    def aux_loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        """Attention distillation ``w · Σ_m ||softmax(up(A_m)) - sg(softmax(A_{m+1}))||²`` (sum over space).

        ``sg`` stops the gradient: each finer map teaches the coarser one before it.

        ``batch`` is not used (the term needs no labels).
        """
        maps = outputs["aux"]
        loss = maps[0].new_zeros(())
        for coarse, fine in zip(maps[:-1], maps[1:]):
            student = _spatial_softmax(resize_to(coarse, fine.shape[2:]))
            teacher = _spatial_softmax(fine).detach()
            loss = loss + (student - teacher).square().sum(dim=1).mean()
        return self.distill_weight * loss
