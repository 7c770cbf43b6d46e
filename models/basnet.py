"""BASNet: boundary-aware predict-refine network with deep supervision.

Qin et al., "BASNet: Boundary-Aware Salient Object Detection", CVPR 2019 (Sec. 3.2-3.3, Fig. 2),
https://openaccess.thecvf.com/content_CVPR_2019/html/Qin_BASNet_Boundary-Aware_Salient_Object_Detection_CVPR_2019_paper.html

- **Predict module**: an encoder-decoder. Encoder = a 3x3 input convolution (64 channels, no
  stride, no max-pool), the four ResNet-34 stages (3, 4, 6, 3 basic blocks of 64-512 channels),
  then two more stages of max-pool + 3 basic blocks with 512 channels. A bridge of three dilated
  (d = 2) conv-BN-ReLU layers. Each decoder stage concatenates the upsampled previous stage with
  the encoder stage of its resolution and runs three conv-BN-ReLU layers (the deepest one at the
  bridge's resolution, with dilation 2).
- **Side outputs**: a 3x3 convolution on the bridge and on every decoder stage, bilinearly
  upsampled to the input size (deep supervision, 7 outputs).
- **Residual refinement module (RRM)**: a small U-Net (64 channels, 4 max-pool levels, one
  conv-BN-ReLU per level) that predicts a residual added to the coarse map:
  ``refined = coarse + RRM(coarse)``.

Every output is trained with the same loss, weight 1 each (the paper's hybrid loss is the
registered ``basnet_hybrid``, :mod:`models.losses.basnet`): the run's loss on the refined logits
and, as deep supervision declared at registration, on the 7 side outputs. The paper's sigmoid
saliency map becomes ``out_channels`` softmax logits; 3D uses the same blocks with 3D
convolutions and trilinear upsampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers import Pool
from torch import nn

from models.deep_supervision import DeepSupervision, constant_weights
from models.layers.conv import conv, conv_norm_act
from models.layers.padding import crop_to, pad_to_multiple
from models.layers.resize import resize_to
from models.layers.resnet import StagedEncoder, basic_stage
from models.registry import register_model


def _cbr(spatial_dims: int, cin: int, cout: int, dilation: int = 1) -> Convolution:
    """3x3 conv (bias) -> BatchNorm -> ReLU."""
    return conv_norm_act(spatial_dims, cin, cout, 3, dilation=dilation, bias=True)


class BASNetEncoder(StagedEncoder):
    """Input conv, ResNet stages, extra max-pool stages: ``(B, C_in, *sp)`` -> feature list.

    Level ``j`` has ``levels[j]`` channels at ``1 / 2**j`` of the input resolution.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        features: Sequence[int],
        blocks: Sequence[int],
        extra_stages: int,
        extra_blocks: int,
    ) -> None:
        super().__init__()
        if len(blocks) != len(features):
            raise ValueError(f"basnet: blocks {tuple(blocks)} needs one entry per features level")
        self.stem = _cbr(spatial_dims, in_channels, features[0])
        stages = [
            basic_stage(spatial_dims, cin, cout, n, 1 if j == 0 else 2)
            for j, (cin, cout, n) in enumerate(zip([features[0], *features[:-1]], features, blocks))
        ]
        pool = Pool[Pool.MAX, spatial_dims]
        stages += [
            nn.Sequential(
                pool(2, 2, ceil_mode=True),
                basic_stage(spatial_dims, features[-1], features[-1], extra_blocks, 1),
            )
            for _ in range(extra_stages)
        ]
        self.stages = nn.ModuleList(stages)
        self.levels = [*features, *[features[-1]] * extra_stages]


class ResidualRefinementModule(nn.Module):
    """BASNet's RRM: ``coarse (B, C, *sp)`` -> ``coarse + residual`` of the same shape.

    Args:
        spatial_dims: 2 or 3.
        channels: logit channels of the coarse map.
        width: feature channels of every level (64 in the paper).
        levels: max-pool levels (4 in the paper).
    """

    def __init__(self, spatial_dims: int, channels: int, width: int = 64, levels: int = 4) -> None:
        super().__init__()
        self.inconv = conv(spatial_dims, channels, width, kernel_size=3, padding=1)
        self.enc = nn.ModuleList(_cbr(spatial_dims, width, width) for _ in range(levels))
        self.pool = Pool[Pool.MAX, spatial_dims](2, 2, ceil_mode=True)
        self.bridge = _cbr(spatial_dims, width, width)
        self.dec = nn.ModuleList(_cbr(spatial_dims, 2 * width, width) for _ in range(levels))
        self.outconv = conv(spatial_dims, width, channels, kernel_size=3, padding=1)

    def forward(self, coarse: torch.Tensor) -> torch.Tensor:
        """``coarse (B, C, *sp)`` -> refined logits of the same shape."""
        x = self.inconv(coarse)
        skips = []
        for j, block in enumerate(self.enc):
            x = block(x if j == 0 else self.pool(x))
            skips.append(x)
        x = self.bridge(self.pool(x))
        for block, skip in zip(self.dec, reversed(skips)):
            x = block(torch.cat([resize_to(x, skip.shape[2:]), skip], dim=1))
        return coarse + self.outconv(x)


@register_model(
    "basnet",
    family="cnn",
    dims=(2, 3),
    description="BASNet: ResNet-34 encoder-decoder + residual refinement, deeply supervised side outputs",
    paper="https://openaccess.thecvf.com/content_CVPR_2019/html/Qin_BASNet_Boundary-Aware_Salient_Object_Detection_CVPR_2019_paper.html",
    small={
        "features": (8, 16, 32),
        "blocks": (1, 1, 1),
        "extra_stages": 1,
        "extra_blocks": 1,
        "rrm_width": 8,
        "rrm_levels": 3,
    },
    options="features blocks extra_stages extra_blocks rrm_width rrm_levels",
    encoder="encoder",
    deep_supervision=DeepSupervision(constant_weights(1.0)),
)
class BASNet(nn.Module):
    """Predict module (encoder, bridge, decoder, side outputs) + residual refinement module.

    The defaults are the paper's (ResNet-34 stages + 2 extra stages, 64-channel RRM). Train it
    with ``loss: basnet_hybrid`` for the paper's setting (the side outputs are trained on the
    run's loss too, weight 1 each).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        features, blocks: ResNet stages' channels and basic blocks (ResNet-34: 64-512, 3/4/6/3).
        extra_stages, extra_blocks: max-pool stages after the ResNet ones and their blocks.
        rrm_width, rrm_levels: channels and max-pool levels of the RRM.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (3, 4, 6, 3),
        extra_stages: int = 2,
        extra_blocks: int = 3,
        rrm_width: int = 64,
        rrm_levels: int = 4,
    ) -> None:
        super().__init__()
        features, blocks = tuple(features), tuple(blocks)
        self.encoder = BASNetEncoder(spatial_dims, in_channels, features, blocks, extra_stages, extra_blocks)
        lv = self.encoder.levels
        deep = lv[-1]
        self.bridge = nn.Sequential(*(_cbr(spatial_dims, deep, deep, dilation=2) for _ in range(3)))
        self.decoder = nn.ModuleList()
        for j in reversed(range(len(lv))):
            out, dil = lv[max(j - 1, 0)], 2 if j == len(lv) - 1 else 1
            self.decoder.append(
                nn.Sequential(
                    _cbr(spatial_dims, 2 * lv[j], lv[j]),
                    _cbr(spatial_dims, lv[j], lv[j], dilation=dil),
                    _cbr(spatial_dims, lv[j], out, dilation=dil),
                )
            )
        side_in = [deep] + [lv[max(j - 1, 0)] for j in reversed(range(len(lv)))]
        self.side = nn.ModuleList(
            conv(spatial_dims, c, out_channels, kernel_size=3, padding=1) for c in side_in
        )
        self.refine = ResidualRefinementModule(spatial_dims, out_channels, rrm_width, rrm_levels)
        self.factor = 2 ** max(len(lv) - 1, rrm_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        """``x (B, in_channels, *spatial)`` -> refined logits ``(B, out_channels, *spatial)``.

        In training mode a dict ``{"logits": refined, "aux": [7 side outputs]}`` (finest decoder
        stage first, bridge last), all at the input size. Sizes that are not multiples of the
        total stride are zero-padded on the high side and cropped back.
        """
        spatial = x.shape[2:]
        x = pad_to_multiple(x, self.factor)
        full = x.shape[2:]
        skips = self.encoder(x)
        h = self.bridge(skips[-1])
        sides = [self.side[0](h)]
        for k, (block, skip) in enumerate(zip(self.decoder, reversed(skips))):
            if k > 0:
                h = resize_to(h, skip.shape[2:])
            h = block(torch.cat([h, skip], dim=1))
            sides.append(self.side[k + 1](h))
        refined = crop_to(self.refine(sides[-1]), spatial)
        if not self.training:
            return refined
        return {"logits": refined, "aux": [crop_to(resize_to(s, full), spatial) for s in reversed(sides)]}
