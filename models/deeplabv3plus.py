"""DeepLabV3+: a dilated ResNet, atrous spatial pyramid pooling and a light decoder.

Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic Image
Segmentation", ECCV 2018, https://arxiv.org/abs/1802.02611 (the ResNet-101 variant of §4.1-4.3).

- Encoder: :class:`models.layers.resnet.ResNetEncoder`, bottleneck blocks whose late stages trade
  stride for dilation so that the deepest features keep ``output_stride`` (DeepLabV3 §3.2,
  multi-grid rates in the last stage).
- :class:`ASPP`: atrous spatial pyramid pooling, one 1×1 and three dilated 3×3 branches plus an
  image-pooling branch, concatenated and projected (DeepLabV3 §3.3).
- :class:`DeepLabV3Plus`: encoder + ASPP + the light decoder of DeepLabV3+ §3.2 (48-channel
  1×1 reduction of the stride-4 features, two 3×3 convolutions, upsampling to the input size).

One implementation for 2D and 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from models.layers.conv import conv_norm_act
from models.layers.resize import resize_to
from models.layers.resnet import ResNetEncoder
from models.registry import register_model


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
        """``x (B, in_channels, *S)`` -> ``(B, channels, *S)``."""
        pooled = self.image_pool(x.mean(dim=tuple(range(2, x.dim())), keepdim=True))
        outs = [b(x) for b in self.branches] + [pooled.expand(-1, -1, *x.shape[2:])]
        return self.project(torch.cat(outs, dim=1))


@register_model(
    "deeplabv3plus",
    family="cnn",
    description="DeepLabV3+: dilated ResNet-101, ASPP (rates 6/12/18), light decoder",
    paper="https://arxiv.org/abs/1802.02611",
    options=(
        "layers base_channels output_stride multi_grid aspp_channels aspp_rates low_level_channels "
        "decoder_channels norm dropout"
    ),
    small={
        "layers": (1, 1, 1, 1),
        "base_channels": 8,
        "aspp_channels": 32,
        "low_level_channels": 8,
        "decoder_channels": 32,
    },
    encoder="encoder",
)
class DeepLabV3Plus(nn.Module):
    """DeepLabV3+: dilated ResNet, ASPP on the deepest features, decoder fusing stride-4 features.

    ``forward(x (B, in_channels, *S))`` -> logits ``(B, out_channels, *S)``. The defaults are the
    paper's ResNet-101 at output stride 16; the paper doubles the ASPP rates at output stride 8:
    pass ``aspp_rates=(12, 24, 36)`` then.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        layers, base_channels, output_stride, multi_grid: the bottleneck
            :class:`models.layers.resnet.ResNetEncoder`.
        aspp_channels, aspp_rates: width and dilation rates of :class:`ASPP`.
        low_level_channels, decoder_channels: the stride-4 reduction and the decoder width.
        norm: MONAI norm name.
        dropout: after the ASPP projection.
    """

    def __init__(
        self,
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
        norm: str | tuple = "batch",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        sd = spatial_dims
        self.encoder = ResNetEncoder(
            sd,
            in_channels,
            layers,
            bottleneck=True,
            base_channels=base_channels,
            output_stride=output_stride,
            multi_grid=multi_grid,
            norm=norm,
        )
        self.aspp = ASPP(sd, self.encoder.out_channels[-1], aspp_channels, aspp_rates, norm, dropout)
        self.reduce = conv_norm_act(sd, self.encoder.out_channels[0], low_level_channels, 1, norm=norm)
        self.decoder = nn.Sequential(
            conv_norm_act(sd, aspp_channels + low_level_channels, decoder_channels, 3, norm=norm),
            conv_norm_act(sd, decoder_channels, decoder_channels, 3, norm=norm),
        )
        self.head = Convolution(sd, decoder_channels, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``."""
        feats = self.encoder(x)
        low = self.reduce(feats[0])
        deep = resize_to(self.aspp(feats[-1]), low.shape[2:])
        logits = self.head(self.decoder(torch.cat([deep, low], dim=1)))
        return resize_to(logits, x.shape[2:])
