"""ResNet building blocks and encoders, one implementation for 2D and 3D.

- :class:`StagedEncoder`: a stem then stages, returning every stage's output (the forward every
  encoder here shares);
- :class:`ResidualBlock` and :class:`ResNetEncoder`: ResNet / ResNeXt (He et al. 2016,
  https://arxiv.org/abs/1512.03385; Xie et al. 2017, https://arxiv.org/abs/1611.05431) with
  basic or bottleneck blocks, whose late stages trade stride for dilation (DeepLabV3 §3.2,
  https://arxiv.org/abs/1706.05587);
- :func:`basic_stage`: MONAI ``ResNetBlock`` basic blocks with a projection shortcut (BASNet);
- :func:`residual_stage`: MONAI ``UnetResBlock`` s, nnU-Net's residual encoder stage (STU-Net and
  the mixer U-Net).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetResBlock
from monai.networks.layers import Conv, Norm, Pool
from monai.networks.nets.resnet import ResNetBlock
from torch import nn

from models.layers.conv import conv_norm_act


class StagedEncoder(nn.Module):
    """A ``stem`` then ``stages`` (an ``nn.ModuleList``) that subclasses build.

    ``forward(x (B, C, *S))`` -> every stage's output, shallow first.
    """

    stem: nn.Module
    stages: nn.ModuleList

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x (B, C, *S)`` -> the output of every stage, shallow first."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class ResidualBlock(nn.Module):
    """ResNet basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 with 4× expansion) block.

    A bottleneck's 3×3 conv has ``groups`` groups of ``width * width_per_group / 64`` channels
    each (ResNeXt's cardinality; ``groups=1, width_per_group=64`` is ResNet).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        width: int,
        bottleneck: bool,
        stride: int = 1,
        dilation: int = 1,
        norm: str | tuple = "batch",
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        out_channels = width * 4 if bottleneck else width
        sd = spatial_dims
        if bottleneck:
            inner = width * width_per_group // 64 * groups
            self.body = nn.Sequential(
                conv_norm_act(sd, in_channels, inner, 1, norm=norm),
                conv_norm_act(sd, inner, inner, 3, stride, dilation, norm=norm, groups=groups),
                conv_norm_act(sd, inner, out_channels, 1, norm=norm, act=None),
            )
        else:
            self.body = nn.Sequential(
                conv_norm_act(sd, in_channels, width, 3, stride, dilation, norm=norm),
                conv_norm_act(sd, width, width, 3, 1, dilation, norm=norm, act=None),
            )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = conv_norm_act(sd, in_channels, out_channels, 1, stride, norm=norm, act=None)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *S)`` -> ``relu(body(x) + shortcut(x))``, ``(B, out_channels, *S/stride)``."""
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetEncoder(StagedEncoder):
    """Dilated ResNet: 7×7 stride-2 stem, 3×3 max-pool, four stages at strides 4, 8, 16, 32.

    The encoder of :mod:`models.deeplabv3plus`, :mod:`models.paratranscnn` and :mod:`models.msga_net`.

    Stages whose stride would exceed ``output_stride`` keep the resolution and dilate instead;
    the blocks of the last stage multiply their dilation by ``multi_grid``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        layers: blocks per stage, e.g. ResNet-101 ``(3, 4, 23, 3)``, ResNet-34 ``(3, 4, 6, 3)``.
        bottleneck: bottleneck blocks (ResNet-50/101) or basic blocks (ResNet-18/34).
        base_channels: stem width; stage ``i`` has width ``base_channels * 2**i``.
        output_stride: 4, 8, 16 or 32, the stride of the deepest features.
        multi_grid: dilation multipliers of the last stage's blocks (cycled).
        norm: MONAI norm name.
        stem_pool: keep the stem's max-pool; without it the stages have strides 2, 4, 8, 16.
        groups, width_per_group: ResNeXt cardinality and group width of the bottleneck 3×3 convs
            (``32, 4`` is ResNeXt-32×4d; the defaults are ResNet).

    ``forward(x (B, in_channels, *S))`` returns the four stage outputs; stage ``i`` has
    ``self.out_channels[i]`` channels and stride ``self.strides[i]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        layers: Sequence[int] = (3, 4, 23, 3),
        bottleneck: bool = True,
        base_channels: int = 64,
        output_stride: int = 16,
        multi_grid: Sequence[int] = (1, 2, 4),
        norm: str | tuple = "batch",
        stem_pool: bool = True,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        if output_stride not in (4, 8, 16, 32):
            raise ValueError(f"output_stride must be 4, 8, 16 or 32, got {output_stride}")
        if len(layers) != 4:
            raise ValueError(f"layers must give 4 stages, got {tuple(layers)}")
        pool = (
            Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()
        )
        self.stem = nn.Sequential(
            conv_norm_act(spatial_dims, in_channels, base_channels, 7, 2, norm=norm), pool
        )
        stride, dilation, cin = 4 if stem_pool else 2, 1, base_channels
        self.stages = nn.ModuleList()
        self.out_channels: list[int] = []
        self.strides: list[int] = []
        for i, n in enumerate(layers):
            step = 1 if i == 0 else 2
            if stride * step > output_stride:
                dilation, step = dilation * step, 1
            stride *= step
            grid = list(multi_grid) if i == 3 else [1]
            blocks = []
            for b in range(n):
                block = ResidualBlock(
                    spatial_dims,
                    cin,
                    base_channels * 2**i,
                    bottleneck,
                    stride=step if b == 0 else 1,
                    dilation=dilation * grid[b % len(grid)],
                    norm=norm,
                    groups=groups,
                    width_per_group=width_per_group,
                )
                cin = block.out_channels
                blocks.append(block)
            self.stages.append(nn.Sequential(*blocks))
            self.out_channels.append(cin)
            self.strides.append(stride)


def basic_stage(spatial_dims: int, cin: int, cout: int, blocks: int, stride: int) -> nn.Sequential:
    """MONAI ResNet basic blocks; the first strides and projects (1x1 conv + BN) when shapes change.

    ``(B, cin, *S)`` -> ``(B, cout, *S / stride)``.
    """
    down = None
    if stride != 1 or cin != cout:
        down = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](cin, cout, kernel_size=1, stride=stride, bias=False),
            Norm[Norm.BATCH, spatial_dims](cout),
        )
    first = ResNetBlock(cin, cout, spatial_dims=spatial_dims, stride=stride, downsample=down)
    return nn.Sequential(
        first, *(ResNetBlock(cout, cout, spatial_dims=spatial_dims) for _ in range(blocks - 1))
    )


def residual_stage(
    spatial_dims: int,
    cin: int,
    cout: int,
    depth: int,
    stride: int | Sequence[int],
    norm: str | tuple,
) -> nn.Sequential:
    """``depth`` MONAI ``UnetResBlock`` s (conv-norm-LeakyReLU-conv-norm, 1x1 projection shortcut);
    the first maps ``cin -> cout`` with ``stride``: ``(B, cin, *S)`` -> ``(B, cout, *S / stride)``."""
    return nn.Sequential(
        UnetResBlock(spatial_dims, cin, cout, kernel_size=3, stride=stride, norm_name=norm),
        *(
            UnetResBlock(spatial_dims, cout, cout, kernel_size=3, stride=1, norm_name=norm)
            for _ in range(depth - 1)
        ),
    )
