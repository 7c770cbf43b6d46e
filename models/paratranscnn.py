"""ParaTransCNN: parallel ResNet and pyramid-transformer encoders fused by channel attention.

Sun et al., "ParaTransCNN: Parallelized TransCNN Encoder for Medical Image Segmentation", 2024,
https://arxiv.org/abs/2401.15307.

- CNN branch: a ResNet-34 (:class:`models.layers.resnet.ResNetEncoder`, basic blocks, no stem
  max-pool, so its stages sit at strides 2, 4, 8, 16).
- Transformer branch, in parallel on the image: a pyramid of three global self-attention stages
  (MONAI ``TransformerBlock``) at strides 4, 8, 16 with widths ``dim``, ``2 dim``, ``4 dim``, each
  entered through a strided-convolution patch embedding of the previous stage's tokens.
- Skips: at strides 4, 8 and 16 the two branches are concatenated and re-weighted per channel by a
  squeeze-and-excitation block (MONAI ``ChannelSELayer``, reduction 16), the paper's channel
  attention fusion.
- Decoder: two 3×3 conv + BN + ReLU per level, transposed-convolution upsampling (2×, 2×, then 4×
  to the input size) and a 1×1 head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import ChannelSELayer, TransformerBlock
from monai.networks.layers import Conv
from torch import nn

from models.layers.conv import conv, conv_norm_act
from models.layers.resnet import ResNetEncoder
from models.layers.tokens import channels_first, channels_last
from models.registry import register_model


class PyramidTransformerStage(nn.Module):
    """Strided-conv patch embedding then ``depth`` global self-attention blocks (no position embedding).

    ``(B, C_in, *S)`` -> ``(B, dim, *S / stride)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        dim: int,
        stride: int,
        depth: int,
        heads: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.embed = conv(spatial_dims, in_channels, dim, kernel_size=stride, stride=stride)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, 2 * dim, heads, dropout) for _ in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C_in, *S)`` -> ``(B, dim, *S / stride)``."""
        x = channels_last(self.embed(x))
        shape = x.shape
        return channels_first(self.blocks(x.reshape(shape[0], -1, shape[-1])).reshape(shape))


def _decoder_block(spatial_dims: int, channels: int, norm: str) -> nn.Sequential:
    return nn.Sequential(*(conv_norm_act(spatial_dims, channels, channels, 3, norm=norm) for _ in range(2)))


@register_model(
    "paratranscnn",
    family="hybrid",
    dims=(2, 3),
    description="ParaTransCNN: parallel ResNet-34 + pyramid transformer encoders, SE-fused skips",
    paper="https://arxiv.org/abs/2401.15307",
    small={
        "dim": 16,
        "depths": (1, 1, 1),
        "heads": 2,
        "layers": (1, 1, 1, 1),
        "base_channels": 8,
        "se_reduction": 4,
    },
    options="dim depths heads dropout layers base_channels se_reduction norm",
    encoder="encoder",
)
class ParaTransCNN(nn.Module):
    """``forward(x (B, in_channels, *S))`` -> logits ``(B, out_channels, *S)``; ``S`` divisible by 16.

    Defaults: the paper's size (transformer width 320, depths 3-3-3, 8 heads; ResNet-34).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        dim, depths, heads, dropout: the transformer branch (``transformer``): widths ``dim``,
            ``2 dim``, ``4 dim``, blocks and heads per stage.
        layers, base_channels: the CNN branch (``encoder``), a basic-block ResNet.
        se_reduction: squeeze-and-excitation reduction of the skip fusion.
        norm: MONAI norm name of the convolutions.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        dim: int = 320,
        depths: Sequence[int] = (3, 3, 3),
        heads: int = 8,
        dropout: float = 0.1,
        layers: Sequence[int] = (3, 4, 6, 3),
        base_channels: int = 64,
        se_reduction: int = 16,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        sd = spatial_dims
        self.encoder = encoder = ResNetEncoder(
            sd,
            in_channels,
            layers,
            bottleneck=False,
            base_channels=base_channels,
            output_stride=32,
            multi_grid=(1,),
            norm=norm,
            stem_pool=False,
        )
        widths = [dim, 2 * dim, 4 * dim]
        self.transformer = nn.ModuleList(
            PyramidTransformerStage(sd, cin, w, s, d, heads, dropout)
            for cin, w, s, d in zip([in_channels, *widths[:2]], widths, (4, 2, 2), depths)
        )
        fused = [w + c for w, c in zip(widths, encoder.out_channels[1:])]  # strides 4, 8, 16
        self.fusion = nn.ModuleList(ChannelSELayer(sd, f, r=se_reduction) for f in fused)
        up = Conv[Conv.CONVTRANS, sd]
        self.decoder = nn.ModuleList(
            [
                _decoder_block(sd, fused[0] + fused[1], norm),
                _decoder_block(sd, 2 * fused[1], norm),
                _decoder_block(sd, fused[2], norm),
            ]
        )
        self.ups = nn.ModuleList(
            [
                up(fused[0] + fused[1], dim, kernel_size=4, stride=4),
                up(2 * fused[1], fused[1], kernel_size=2, stride=2),
                up(fused[2], fused[1], kernel_size=2, stride=2),
            ]
        )
        self.head = conv(sd, dim, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``."""
        cnn = self.encoder(x)[1:]  # strides 4, 8, 16
        tokens, vit = x, []
        for stage in self.transformer:
            tokens = stage(tokens)
            vit.append(tokens)
        skips = [se(torch.cat([v, c], dim=1)) for se, v, c in zip(self.fusion, vit, cnn)]
        y = self.ups[2](self.decoder[2](skips[2]))
        y = self.ups[1](self.decoder[1](torch.cat([skips[1], y], dim=1)))
        y = self.ups[0](self.decoder[0](torch.cat([skips[0], y], dim=1)))
        return self.head(y)
