"""TVConv U-Net: a U-Net whose depthwise convolutions are translation-variant (TVConv).

Chen et al., "TVConv: Efficient Translation Variant Convolution for Layout-aware Visual
Processing", CVPR 2022, https://arxiv.org/abs/2203.10489 (Sec. 3, Fig. 3; official code
``JierunChen/TVConv``).

**TVConv** (Sec. 3.2): a depthwise ``k x k`` convolution whose kernel differs at every pixel. The
kernels are not a function of the input: learnable *affinity maps* ``A (C_a, *size)`` (ones at
init) pass through a *weight-generating block* (``n`` conv-LayerNorm-ReLU layers of ``C_i``
channels, then a 3x3 conv to ``C * k^d`` channels), giving one depthwise kernel per channel and
position. The layer therefore needs a fixed input size (``fixed_input_size=True``): it learns
the layout of the images (anatomy at fixed positions), which a translation-invariant
convolution cannot. Defaults of the paper: ``k = 3``, ``C_a = 4``, ``C_i = 64``, ``n = 1 + 3``
layers, no bias.

**Where it sits**: the paper swaps the depthwise convolutions of MobileNetV2's inverted residual
blocks for TVConv (its optic disc/cup segmentation uses DeepLabv3+ with that backbone). segbench
places the same TVConv inverted residual blocks (1x1 expand -> TVConv -> BN -> ReLU6 -> 1x1
project; residual when shapes match) at every level of a U-Net: max-pool down, transposed-conv
up, skip concatenation, one block per encoder and decoder level, widths after MobileNetV2's
stages (16, 24, 32, 64, 96).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import UpSample
from monai.networks.layers import Norm, Pool
from torch import nn

from models.layers.conv import conv
from models.registry import register_model

_DEFAULT_IMG = {2: (64, 64), 3: (32, 32, 32)}


def _conv_ln_relu(spatial_dims: int, cin: int, cout: int, size: Sequence[int]) -> nn.Sequential:
    """3x3 conv (no bias) -> LayerNorm over ``(cout, *size)`` -> ReLU (the weight-generating layers)."""
    return nn.Sequential(
        conv(spatial_dims, cin, cout, kernel_size=3, padding=1, bias=False),
        nn.LayerNorm([cout, *size]),
        nn.ReLU(inplace=True),
    )


class TVConv(nn.Module):
    """Translation-variant depthwise convolution.

    Args:
        channels: input = output channels (depthwise).
        size: spatial size of the input it is applied to (``(H, W)`` or ``(D, H, W)``).
        kernel_size: ``k`` of the per-position ``k^d`` kernels.
        affinity_channels: channels of the learnable affinity maps.
        inter_channels: channels of the weight-generating layers.
        inter_layers: extra conv-LN-ReLU layers after the first one.
        bias: also generate a per-channel, per-position bias.
    """

    def __init__(
        self,
        channels: int,
        size: Sequence[int],
        kernel_size: int = 3,
        affinity_channels: int = 4,
        inter_channels: int = 64,
        inter_layers: int = 3,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.size = tuple(int(s) for s in size)
        nd = len(self.size)
        self.channels, self.k = channels, kernel_size
        self.affinity = nn.Parameter(torch.ones(1, affinity_channels, *self.size))
        self.weight_gen = self._generator(
            nd, affinity_channels, inter_channels, inter_layers, channels * kernel_size**nd
        )
        self.bias_gen = (
            self._generator(nd, affinity_channels, inter_channels, inter_layers, channels) if bias else None
        )
        self.offsets = list(itertools.product(range(kernel_size), repeat=nd))

    def _generator(self, nd: int, cin: int, inter: int, layers: int, cout: int) -> nn.Sequential:
        blocks = [_conv_ln_relu(nd, cin, inter, self.size)]
        blocks += [_conv_ln_relu(nd, inter, inter, self.size) for _ in range(layers)]
        blocks.append(conv(nd, inter, cout, kernel_size=3, padding=1, bias=False))
        return nn.Sequential(*blocks)

    def kernels(self) -> torch.Tensor:
        """Per-position kernels ``(C, k^d, *size)`` (offsets in row-major order, as ``nn.Unfold``)."""
        return self.weight_gen(self.affinity).view(self.channels, self.k ** len(self.size), *self.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, *size)`` -> ``(B, C, *size)``; zero padding ``(k - 1) // 2``."""
        weight = self.kernels()
        p = (self.k - 1) // 2
        xp = F.pad(x, [p] * (2 * len(self.size)))
        out = x.new_zeros(x.shape)
        for i, off in enumerate(self.offsets):
            window = xp[(..., *(slice(o, o + s) for o, s in zip(off, self.size)))]
            out = out + weight[:, i] * window
        if self.bias_gen is not None:
            out = out + self.bias_gen(self.affinity)
        return out


class TVConvBlock(nn.Module):
    """MobileNetV2 inverted residual with a TVConv as its depthwise layer.

    ``(B, cin, *size)`` -> ``(B, cout, *size)``: 1x1 conv-BN-ReLU6 to ``expand * cout``, TVConv-BN-
    ReLU6, 1x1 conv-BN; plus the input when ``cin == cout``.
    """

    def __init__(
        self, spatial_dims: int, cin: int, cout: int, size: Sequence[int], expand: int, **tv_kw: int
    ) -> None:
        super().__init__()
        hidden = cout * expand
        norm = Norm[Norm.BATCH, spatial_dims]
        self.body = nn.Sequential(
            conv(spatial_dims, cin, hidden, kernel_size=1, bias=False),
            norm(hidden),
            nn.ReLU6(inplace=True),
            TVConv(hidden, size, **tv_kw),
            norm(hidden),
            nn.ReLU6(inplace=True),
            conv(spatial_dims, hidden, cout, kernel_size=1, bias=False),
            norm(cout),
        )
        self.residual = cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, cin, *size)`` -> ``(B, cout, *size)``."""
        y = self.body(x)
        return x + y if self.residual else y


@register_model(
    "tvconv_unet",
    family="cnn",
    dims=(2, 3),
    description="U-Net of MobileNetV2 blocks whose depthwise convs are translation-variant (TVConv)",
    paper="https://arxiv.org/abs/2203.10489",
    small={"features": (8, 16, 32), "expand": 2, "inter_channels": 8, "inter_layers": 1},
    options="features expand kernel_size affinity_channels inter_channels inter_layers bias",
    fixed_input_size=True,
    default_img_size=_DEFAULT_IMG,
    encoder="encoder",
)
class TVConvUNet(nn.Module):
    """U-Net of :class:`TVConvBlock` levels for inputs of exactly ``img_size``.

    Each entry of ``img_size`` must be divisible by ``2 ** (levels - 1)``. The TVConv options
    default to the paper's (k 3, 4 affinity maps, 64 x (1 + 3) generator layers).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        img_size: the input size; every level's TVConv learns kernels for its resolution.
        features: channels per level (level ``j`` at ``img_size / 2**j``).
        expand: inverted-residual expansion ratio (MobileNetV2: 6).
        kernel_size, affinity_channels, inter_channels, inter_layers, bias: :class:`TVConv` options.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        img_size: Sequence[int],
        features: Sequence[int] = (16, 24, 32, 64, 96),
        expand: int = 6,
        kernel_size: int = 3,
        affinity_channels: int = 4,
        inter_channels: int = 64,
        inter_layers: int = 3,
        bias: bool = False,
    ) -> None:
        super().__init__()
        img_size = tuple(img_size)
        tv_kw = dict(
            kernel_size=kernel_size,
            affinity_channels=affinity_channels,
            inter_channels=inter_channels,
            inter_layers=inter_layers,
            bias=bias,
        )
        f = list(features)
        factor = 2 ** (len(f) - 1)
        if len(img_size) != spatial_dims or any(s % factor for s in img_size):
            raise ValueError(
                f"tvconv_unet: img_size {tuple(img_size)} needs {spatial_dims} entries divisible by {factor}"
            )
        sizes = [tuple(s // 2**j for s in img_size) for j in range(len(f))]
        self.encoder = nn.ModuleList(
            TVConvBlock(spatial_dims, cin, cout, sizes[j], expand, **tv_kw)
            for j, (cin, cout) in enumerate(zip([in_channels, *f[:-1]], f))
        )
        self.pool = Pool[Pool.MAX, spatial_dims](2)
        self.up = nn.ModuleList(
            UpSample(spatial_dims, f[j + 1], f[j], scale_factor=2, mode="deconv")
            for j in reversed(range(len(f) - 1))
        )
        self.decoder = nn.ModuleList(
            TVConvBlock(spatial_dims, 2 * f[j], f[j], sizes[j], expand, **tv_kw)
            for j in reversed(range(len(f) - 1))
        )
        self.head = conv(spatial_dims, f[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *img_size)`` -> logits ``(B, out_channels, *img_size)``."""
        skips = []
        for j, block in enumerate(self.encoder):
            x = block(x if j == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)
