"""CNN family: MONAI's U-Net and an nnU-Net-style residual-encoder U-Net.

- U-Net: Ronneberger et al. 2015, https://arxiv.org/abs/1505.04597 (MONAI ``UNet`` with residual
  units, Kerfoot et al. 2018).
- Residual-encoder U-Net: Isensee et al., "nnU-Net Revisited", MICCAI 2024,
  https://arxiv.org/abs/2404.09556 — MONAI ``DynUNet`` with residual blocks.

Both are CPU-sized by default. nnU-Net's own networks configured from a plan, with presets sized
as published, are ``nnunet_plain`` / ``nnunet_resenc`` (:mod:`models.nnunet_nets`).
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import DynUNet, UNet
from torch import nn

from models.registry import register_model


@register_model(
    "unet",
    family="cnn",
    description="MONAI U-Net with residual units",
    paper="https://arxiv.org/abs/1505.04597",
    options="channels num_res_units norm dropout",
)
def unet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    num_res_units: int = 2,
    norm: str = "instance",
    dropout: float = 0.0,
) -> nn.Module:
    """Plain U-Net; ``channels`` sets the width per level (strides of 2 between levels)."""
    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        strides=(2,) * (len(channels) - 1),
        num_res_units=num_res_units,
        norm=norm,
        dropout=dropout,
    )


@register_model(
    "resenc_unet",
    family="cnn",
    description="nnU-Net-style residual-encoder U-Net (MONAI DynUNet, res_block=True)",
    paper="https://arxiv.org/abs/2404.09556",
    options="filters norm",
)
def resenc_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    filters: Sequence[int] = (16, 32, 64, 128),
    norm: str = "instance",
) -> nn.Module:
    """Residual-encoder U-Net with 3×3(×3) kernels and stride-2 downsampling per level.

    ``filters`` needs at least three levels (MONAI DynUNet's minimum).
    """
    n = len(filters)
    if n < 3:
        raise ValueError(f"resenc_unet: filters needs at least 3 levels, got {tuple(filters)}")
    kernels = [[3] * spatial_dims] * n
    strides = [[1] * spatial_dims] + [[2] * spatial_dims] * (n - 1)
    return DynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=list(filters),
        norm_name=norm,
        res_block=True,
    )
