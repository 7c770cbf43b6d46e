"""Convolution blocks for any number of spatial dimensions (MONAI's ``Conv`` factory and ``Convolution``)."""

from __future__ import annotations

from typing import Any

from monai.networks.blocks import Convolution
from monai.networks.layers import Conv
from torch import nn


def conv(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
    """A plain ``nn.Conv{1,2,3}d`` for ``spatial_dims`` (``kwargs``: ``kernel_size``, ``stride``, ...)."""
    return Conv[Conv.CONV, spatial_dims](in_channels, out_channels, **kwargs)


def conv_norm_act(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
    norm: str | tuple | None = "batch",
    act: str | tuple | None = "relu",
    groups: int = 1,
    bias: bool | None = None,
) -> Convolution:
    """Convolution with "same" padding, then norm, then activation (MONAI ``Convolution``).

    ``(B, in_channels, *S)`` -> ``(B, out_channels, *S / stride)``. The convolution has a bias
    when there is no norm, unless ``bias`` says otherwise. ``norm`` / ``act`` are MONAI names
    (or ``(name, kwargs)``); ``None`` leaves them out.
    """
    return Convolution(
        spatial_dims,
        in_channels,
        out_channels,
        strides=stride,
        kernel_size=kernel_size,
        dilation=dilation,
        padding=dilation * (kernel_size - 1) // 2,
        act=act,
        norm=norm,
        bias=norm is None if bias is None else bias,
        groups=groups,
    )
