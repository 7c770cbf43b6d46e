"""Blocks the zoo shares; every one serves 2D and 3D (MONAI's ``spatial_dims``).

A model file imports its blocks from here, never from another model's file. Re-exported here,
the small blocks:

- :mod:`models.layers.padding`: ``pad_to_multiple``, ``padding_to_multiple``, ``crop_to``;
- :mod:`models.layers.conv`: ``conv``, ``conv_norm_act``;
- :mod:`models.layers.resize`: ``resize_to``;
- :mod:`models.layers.resnet`: ``StagedEncoder``, ``ResidualBlock``, ``ResNetEncoder``,
  ``basic_stage``, ``residual_stage``;
- :mod:`models.layers.tokens`: ``channels_last`` / ``channels_first``, ``to_tokens`` /
  ``from_tokens``, ``group_tokens`` / ``ungroup_tokens``, ``PatchExpand``.

Imported from their modules, the larger cores:

- :mod:`models.layers.mixer_unet`: the residual U-Net with token mixers on chosen levels;
- :mod:`models.layers.ssm`: the Mamba selective-state-space layer (pure PyTorch or CUDA kernel);
- :mod:`models.layers.mlstm`: the mLSTM cell and Vision-LSTM blocks;
- :mod:`models.layers.graph`: template graphs and Chebyshev graph convolutions;
- :mod:`models.layers.contour_raster`: differentiable rasterisation of closed contours;
- :mod:`models.layers.skeleton`: differentiable topology-preserving skeletonization.
"""

from __future__ import annotations

from models.layers.conv import conv, conv_norm_act
from models.layers.padding import crop_to, pad_to_multiple, padding_to_multiple
from models.layers.resize import resize_to
from models.layers.resnet import ResidualBlock, ResNetEncoder, StagedEncoder, basic_stage, residual_stage
from models.layers.tokens import (
    PatchExpand,
    channels_first,
    channels_last,
    from_tokens,
    group_tokens,
    to_tokens,
    ungroup_tokens,
)

__all__ = [
    "PatchExpand",
    "ResNetEncoder",
    "ResidualBlock",
    "StagedEncoder",
    "basic_stage",
    "channels_first",
    "channels_last",
    "conv",
    "conv_norm_act",
    "crop_to",
    "from_tokens",
    "group_tokens",
    "pad_to_multiple",
    "padding_to_multiple",
    "residual_stage",
    "resize_to",
    "to_tokens",
    "ungroup_tokens",
]
