"""Attention U-Net: Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas",
MIDL 2018, https://arxiv.org/abs/1804.03999 (reference code ozan-oktay/Attention-Gated-Networks).

MONAI ``AttentionUnet``: a U-Net whose skip connections pass through additive attention gates
driven by the coarser decoder features. Presets: ``small`` (the default, the width of the ``unet``
default) and ``paper`` (the reference code's filters [64, 128, 256, 512, 1024] / feature_scale 4 =
(16, 32, 64, 128, 256)). MONAI's network has no deep supervision and gates each skip with the
decoder feature of the same level; the parameter counts and the gap to the paper's figure are in
``docs/models.md`` (Attention U-Net).
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import AttentionUnet
from torch import nn

from models.registry import register_model

SMALL_CHANNELS = (16, 32, 64, 128)
PAPER_CHANNELS = (16, 32, 64, 128, 256)


@register_model(
    "attention_unet",
    family="cnn",
    description="Attention U-Net: additive attention gates on the skips (MONAI AttentionUnet)",
    paper="https://arxiv.org/abs/1804.03999",
    options="channels dropout",
    presets={"paper": {"channels": list(PAPER_CHANNELS)}},
)
def attention_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] = SMALL_CHANNELS,
    dropout: float = 0.0,
) -> nn.Module:
    """Attention U-Net; ``channels`` sets the width per level (strides of 2 between levels).

    ``(B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``; each spatial size
    must be divisible by ``2 ** (len(channels) - 1)``.
    """
    return AttentionUnet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(int(c) for c in channels),
        strides=(2,) * (len(channels) - 1),
        dropout=dropout,
    )
