"""DeepLabV3+ and the dilated ResNet encoder it shares with other segbench models.

Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation", ECCV 2018, https://arxiv.org/abs/1802.02611 (the ResNet-101 variant of §4.1-4.3).

- :class:`ResNetEncoder`: a ResNet (He et al. 2016) with basic or bottleneck blocks whose late
  stages trade stride for dilation so that the deepest features keep ``output_stride``
  (DeepLabV3 §3.2, multi-grid rates in the last stage). One implementation for 2D and 3D.
- :class:`ASPP`: atrous spatial pyramid pooling, one 1×1 and three dilated 3×3 branches plus an
  image-pooling branch, concatenated and projected (DeepLabV3 §3.3).
- :class:`DeepLabV3Plus`: encoder + ASPP + the light decoder of DeepLabV3+ §3.2 (48-channel
  1×1 reduction of the stride-4 features, two 3×3 convolutions, upsampling to the input size).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers import Pool
from torch import nn

from models.registry import register_model

_INTERP = {1: "linear", 2: "bilinear", 3: "trilinear"}


def conv_norm_act(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    stride: int = 1,
    dilation: int = 1,
    norm: str | tuple | None = "batch",
    act: str | None = "relu",
    groups: int = 1,
) -> Convolution:
    """Bias-free convolution with "same" padding, then norm, then activation (MONAI Convolution)."""
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
        bias=norm is None,
        groups=groups,
    )


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Linear interpolation of ``x (B, C, *spatial)`` to ``(B, C, *size)``."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=_INTERP[x.dim() - 2], align_corners=False)


class _ResidualBlock(nn.Module):
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
        return F.relu(self.body(x) + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """Dilated ResNet: 7×7 stride-2 stem, 3×3 max-pool, four stages at strides 4, 8, 16, 32.

    Shared by :mod:`models.paratranscnn` and :mod:`models.msga_net`.

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
                block = _ResidualBlock(
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

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``(B, in_channels, *S)`` -> ``(B, channels, *S)``.

    Branches: a 1×1 conv, one 3×3 conv per entry of ``rates`` (dilated by it) and global average
    pooling + 1×1 conv broadcast back; concatenated, 1×1-projected, then dropout. The pooling
    branch has no norm layer (batch norm on one value per channel fails for batch size 1).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        norm: str | tuple = "batch",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList(
            [conv_norm_act(spatial_dims, in_channels, channels, 1, norm=norm)]
            + [conv_norm_act(spatial_dims, in_channels, channels, 3, dilation=r, norm=norm) for r in rates]
        )
        self.image_pool = conv_norm_act(spatial_dims, in_channels, channels, 1, norm=None)
        self.project = nn.Sequential(
            conv_norm_act(spatial_dims, channels * (len(self.rates) + 2), channels, 1, norm=norm),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x.mean(dim=tuple(range(2, x.dim())), keepdim=True))
        outs = [b(x) for b in self.branches] + [pooled.expand(-1, -1, *x.shape[2:])]
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+: dilated ResNet, ASPP on the deepest features, decoder fusing stride-4 features.

    ``forward(x (B, in_channels, *S))`` -> logits ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        encoder: ResNetEncoder,
        aspp_channels: int = 256,
        aspp_rates: Sequence[int] = (6, 12, 18),
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        norm: str | tuple = "batch",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        sd = spatial_dims
        self.encoder = encoder
        self.aspp = ASPP(sd, encoder.out_channels[-1], aspp_channels, aspp_rates, norm, dropout)
        self.reduce = conv_norm_act(sd, encoder.out_channels[0], low_level_channels, 1, norm=norm)
        self.decoder = nn.Sequential(
            conv_norm_act(sd, aspp_channels + low_level_channels, decoder_channels, 3, norm=norm),
            conv_norm_act(sd, decoder_channels, decoder_channels, 3, norm=norm),
        )
        self.head = Convolution(sd, decoder_channels, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        low = self.reduce(feats[0])
        deep = resize_to(self.aspp(feats[-1]), low.shape[2:])
        logits = self.head(self.decoder(torch.cat([deep, low], dim=1)))
        return resize_to(logits, x.shape[2:])


@register_model(
    "deeplabv3plus",
    family="cnn",
    dims=(2, 3),
    description="DeepLabV3+: dilated ResNet-101, ASPP (rates 6/12/18), light decoder",
    paper="https://arxiv.org/abs/1802.02611",
    small={
        "layers": (1, 1, 1, 1),
        "base_channels": 8,
        "aspp_channels": 32,
        "low_level_channels": 8,
        "decoder_channels": 32,
    },
    fixed_input_size=False,
    encoder="encoder",
)
def deeplabv3plus(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    layers: Sequence[int] = (3, 4, 23, 3),
    base_channels: int = 64,
    output_stride: int = 16,
    multi_grid: Sequence[int] = (1, 2, 4),
    aspp_channels: int = 256,
    aspp_rates: Sequence[int] = (6, 12, 18),
    low_level_channels: int = 48,
    decoder_channels: int = 256,
    norm: str = "batch",
    dropout: float = 0.1,
) -> nn.Module:
    """DeepLabV3+ with a bottleneck ResNet encoder (defaults: ResNet-101, output stride 16).

    The paper doubles the ASPP rates at output stride 8: pass ``aspp_rates=(12, 24, 36)`` then.
    """
    encoder = ResNetEncoder(
        spatial_dims, in_channels, layers, True, base_channels, output_stride, multi_grid, norm
    )
    return DeepLabV3Plus(
        spatial_dims,
        in_channels,
        out_channels,
        encoder,
        aspp_channels,
        aspp_rates,
        low_level_channels,
        decoder_channels,
        norm,
        dropout,
    )
