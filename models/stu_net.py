"""STU-Net: the scalable residual nnU-Net (sizes S / B / L / H).

Huang et al., "STU-Net: Scalable and Transferable Medical Image Segmentation Models Empowered by
Large-Scale Supervised Pre-training", 2023, https://arxiv.org/abs/2304.06716 (Sec. 3, Fig. 2,
Table 1).

Six resolution stages; every stage is ``depth`` residual blocks (conv-IN-LeakyReLU-conv-IN plus a
1x1 projection shortcut on the first block of a stage, MONAI ``UnetResBlock``); the first block of
stages 1..5 downsamples by stride 2. The decoder upsamples by nearest-neighbour interpolation
and a 1x1 convolution (weight-free resampling, so pre-trained weights transfer across patch
sizes), concatenates the skip and runs ``depth`` residual blocks. A 1x1 head on every decoder
stage gives nnU-Net's deep supervision: the run's loss on each coarser head against the
nearest-downsampled label, weight ``2^-k`` for the head ``k`` levels below full resolution and 0
for the coarsest (:func:`models.deep_supervision.halving_weights`, declared at registration).
Scaling changes only width and depth:

======  ==========================  =======  ================================
size    channels                    depth    parameters reported (Table 1)
======  ==========================  =======  ================================
S       16, 32, 64, 128, 256, 256   1        14.60 M
B       32 ... 512, 512             1        58.26 M
L       64 ... 1024, 1024           2        440.30 M
H       96 ... 1536, 1536           3        1457.33 M
======  ==========================  =======  ================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import UpSample
from torch import nn

from models.deep_supervision import DeepSupervision, halving_weights
from models.layers.conv import conv
from models.layers.padding import crop_to, pad_to_multiple, padding_to_multiple
from models.layers.resnet import residual_stage
from models.registry import register_model

# size -> (channels per stage, residual blocks per stage)
STU_SIZES: dict[str, tuple[tuple[int, ...], int]] = {
    "S": ((16, 32, 64, 128, 256, 256), 1),
    "B": ((32, 64, 128, 256, 512, 512), 1),
    "L": ((64, 128, 256, 512, 1024, 1024), 2),
    "H": ((96, 192, 384, 768, 1536, 1536), 3),
}
_NORM = ("instance", {"affine": True})


class STUNet(nn.Module):
    """Residual nnU-Net of STU-Net.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        features: channels of the six stages (stage ``j > 0`` halves the resolution).
        depth: residual blocks per stage (encoder and decoder alike).
        strides: downsampling of stages 1.. (an int or one per spatial dim each), nnU-Net's
            ``pool_op_kernel_sizes``; STU-Net pads a shorter plan with 1s to five entries.
        deep_supervision: in training, return ``{"logits", "aux"}`` with the coarser decoder heads
            (supervised through the registration's :class:`models.deep_supervision.DeepSupervision`).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        depth: int,
        strides: Sequence[int | Sequence[int]],
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        feats = list(features)
        if len(feats) < 2 or depth < 1:
            raise ValueError(f"stu_net: need >= 2 stages and depth >= 1, got {tuple(feats)}, depth {depth}")
        if len(strides) != len(feats) - 1:
            raise ValueError(
                f"stu_net: strides needs {len(feats) - 1} entries (one per stage after the first)"
            )
        steps = [(s,) * spatial_dims if isinstance(s, int) else tuple(s) for s in strides]
        self.factor = [math.prod(st[d] for st in steps) for d in range(spatial_dims)]
        self.encoder = nn.ModuleList(
            residual_stage(spatial_dims, cin, cout, depth, 1 if j == 0 else steps[j - 1], _NORM)
            for j, (cin, cout) in enumerate(zip([in_channels, *feats[:-1]], feats))
        )
        ups, decs, heads = [], [], []
        for j in reversed(range(len(feats) - 1)):
            ups.append(
                UpSample(
                    spatial_dims,
                    feats[j + 1],
                    feats[j],
                    scale_factor=steps[j],
                    mode="nontrainable",
                    pre_conv=conv(spatial_dims, feats[j + 1], feats[j], kernel_size=1),
                    interp_mode="nearest",
                    align_corners=None,
                )
            )
            decs.append(residual_stage(spatial_dims, 2 * feats[j], feats[j], depth, 1, _NORM))
            heads.append(conv(spatial_dims, feats[j], out_channels, kernel_size=1))
        self.upsample = nn.ModuleList(ups)
        self.decoder = nn.ModuleList(decs)
        self.heads = nn.ModuleList(heads)  # coarsest first; heads[-1] is the final output
        self.return_aux = deep_supervision

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        """``x (B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``.

        With deep supervision (in training mode), a dict ``{"logits": final, "aux": [...]}``
        whose ``aux`` holds the coarser heads' logits, finest first. Sizes that are not multiples
        of the total stride are zero-padded on the high side and cropped back.

        Raises:
            ValueError: in training, when the bottleneck would hold one voxel (instance norm
                needs more; use fewer stride-2 ``strides`` for such small patches).
        """
        spatial = x.shape[2:]
        pad = padding_to_multiple(spatial, self.factor)
        if self.training and math.prod((s + p) // f for s, p, f in zip(spatial, pad, self.factor)) == 1:
            raise ValueError(
                f"stu_net: a {tuple(spatial)} patch leaves one bottleneck voxel; pass fewer stride-2 strides"
            )
        x = pad_to_multiple(x, self.factor)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        outs = []
        for up, dec, head, skip in zip(self.upsample, self.decoder, self.heads, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
            outs.append(head(x))
        logits = crop_to(outs[-1], spatial)
        if self.return_aux and self.training and not any(pad):
            return {"logits": logits, "aux": outs[-2::-1]}
        return logits


@register_model(
    "stu_net",
    family="cnn",
    dims=(2, 3),
    description="STU-Net: scalable residual nnU-Net, sizes S/B/L/H (default B), deep supervision",
    paper="https://arxiv.org/abs/2304.06716",
    small={"features": (8, 16, 32, 64, 64, 64), "strides": (2, 2, 2, 1, 1)},
    options="size features depth strides deep_supervision",
    encoder="encoder",
    deep_supervision=DeepSupervision(halving_weights),
)
def stu_net(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    size: str = "B",
    features: Sequence[int] | None = None,
    depth: int | None = None,
    strides: Sequence[int | Sequence[int]] = (2, 2, 2, 2, 2),
    deep_supervision: bool = True,
) -> nn.Module:
    """STU-Net of ``size`` ``"S"``/``"B"``/``"L"``/``"H"`` (Table 1).

    ``features``/``depth`` override the size's widths / blocks per stage; ``strides`` default to
    the five 2x poolings of the paper's 128^3 plan. segbench's small size has 8..64 channels and
    strides ``(2, 2, 2, 1, 1)`` (total stride 8, so 16-voxel patches train).
    """
    if size not in STU_SIZES:
        raise ValueError(f"stu_net: size must be one of {sorted(STU_SIZES)}, got {size!r}")
    feats, blocks = STU_SIZES[size]
    return STUNet(
        spatial_dims,
        in_channels,
        out_channels,
        features=feats if features is None else tuple(features),
        depth=blocks if depth is None else depth,
        strides=strides,
        deep_supervision=deep_supervision,
    )
