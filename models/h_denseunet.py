"""H-DenseUNet: a 2D DenseUNet on the slices, a 3D DenseUNet on the volume, hybrid feature fusion.

Li et al., "H-DenseUNet: Hybrid Densely Connected UNet for Liver and Tumor Segmentation from CT
Volumes", IEEE TMI 37(12), 2018, https://arxiv.org/abs/1709.07330 (Sec. III, Fig. 2, Table I;
official code ``xmengli/H-DenseUNet``).

- **DenseUNet** (Table I): a DenseNet encoder (7x7 stride-2 conv, 3x3 max-pool, dense blocks of
  BN-ReLU-1x1-BN-ReLU-3x3 layers joined by compression-0.5 transitions; MONAI ``DenseNet``
  features) and a decoder of five (upsample x2, 3x3 conv-BN-ReLU) stages. Encoder features are
  added to the upsampled maps (long skip connections, element-wise sum): the deepest through a
  1x1 convolution, the others where the channel counts agree - all of them in the 2D net
  ("DenseUNet-167": 167 conv layers), only the deepest in the 3D one ("DenseUNet-65").
  2D: growth 48, blocks (6, 12, 36, 24), decoder (768, 384, 96, 96, 64). 3D: growth 32, blocks
  (3, 4, 12, 8), decoder (504, 224, 192, 96, 64), transitions and the first three upsamplings
  only in-plane (the slice axis is pooled by the stem only).
- **Hybrid feature fusion** (Sec. III-C): the 2D net runs on every slice with its two neighbours
  as extra channels, giving per-slice features ``X2d`` and predictions ``y2d``, stacked back into
  volumes. The 3D net sees the volume concatenated with ``softmax(y2d)`` and gives ``X3d``; the
  sum ``X2d + X3d`` goes through the HFF layer (3x3x3 conv-BN-ReLU) and a 1x1x1 classifier.
- **Loss** (Eq. 7): ``L(y_H) + lambda * L(y2d)``, ``lambda = 0.5``, one loss ``L`` (the paper's
  cross-entropy: ``loss: ce``): the run's loss on both, the 2D term as deep supervision declared at
  registration. The paper first trains the 2D net alone and then fine-tunes end to end; segbench
  trains end to end from the start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.layers import Pool
from monai.networks.nets import DenseNet
from torch import nn

from models.deep_supervision import DeepSupervision, constant_weights
from models.layers.conv import conv, conv_norm_act
from models.layers.padding import crop_to, pad_to_multiple
from models.registry import register_model


class DenseUNet(nn.Module):
    """DenseNet encoder + summing-skip decoder: ``(B, C, *sp)`` -> features and logits.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: input channels and classes.
        init_features, growth_rate, block_config: DenseNet encoder (4 dense blocks).
        decoder: output channels of the five upsampling stages (the last is the feature width).
        slice_axis: spatial axis (0-based) not pooled by transitions nor by the first three
            upsamplings (the paper's 3D net); ``None`` pools every axis.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        init_features: int,
        growth_rate: int,
        block_config: Sequence[int],
        decoder: Sequence[int],
        slice_axis: int | None = None,
    ) -> None:
        super().__init__()
        if len(block_config) != 4 or len(decoder) != 5:
            raise ValueError("h_denseunet: block_config needs 4 entries and decoder 5")
        dense = DenseNet(
            spatial_dims,
            in_channels,
            1,
            init_features=init_features,
            growth_rate=growth_rate,
            block_config=tuple(block_config),
            bn_size=4,
        )
        self.encoder = dense.features  # the classification head is dropped
        skips = [init_features]
        c = init_features
        for j, n in enumerate(block_config):
            c += n * growth_rate
            skips.append(c)
            if j < 3:
                c //= 2
        in_plane = tuple(1 if a == slice_axis else 2 for a in range(spatial_dims))
        self.scales = [in_plane] * 3 + [(2,) * spatial_dims] * 2
        if slice_axis is not None:
            for j in (1, 2, 3):
                getattr(self.encoder, f"transition{j}").pool = Pool[Pool.AVG, spatial_dims](
                    in_plane, in_plane
                )
        self.line = conv(spatial_dims, skips[3], c, kernel_size=1)  # deepest skip projection
        ups, chans = [], c
        self.skip_used = []
        for k, cout in enumerate(decoder):
            skip_c = skips[3 - k] if k < 4 else None
            self.skip_used.append(k == 0 or skip_c == chans)
            ups.append(conv_norm_act(spatial_dims, chans, cout, 3, bias=True))
            chans = cout
        self.decoder = nn.ModuleList(ups)
        self.head = conv(spatial_dims, chans, out_channels, kernel_size=1)
        self.features = chans

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, *sp)`` -> ``(features (B, decoder[-1], *sp), logits (B, out_channels, *sp))``.

        ``sp`` must be divisible by 32 (by 4 along ``slice_axis``).
        """
        boxes = []
        for name, layer in self.encoder.named_children():
            if name == "pool0" or name.startswith("transition"):
                boxes.append(x)
            x = layer(x)
        h = F.relu(x)
        for k, (block, scale) in enumerate(zip(self.decoder, self.scales)):
            h = F.interpolate(h, scale_factor=scale, mode="nearest")
            if k == 0:
                h = h + self.line(boxes[3])
            elif k < 4 and self.skip_used[k]:
                h = h + boxes[3 - k]
            h = block(h)
        return h, self.head(h)


def _slices_with_neighbours(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``(B, C, *sp)`` volume -> ``(B * S, 3C, *plane)`` slices along ``axis`` with both neighbours."""
    dim = 2 + axis
    padded = torch.cat([x.narrow(dim, 0, 1), x, x.narrow(dim, x.shape[dim] - 1, 1)], dim=dim)
    n = x.shape[dim]
    # channel-major [c0 @ d-1, c0 @ d, c0 @ d+1, c1 @ d-1, ...], as models.slices (2.5D input)
    stack = torch.stack([padded.narrow(dim, o, n) for o in range(3)], dim=2).flatten(1, 2)  # (B, 3C, *sp)
    stack = stack.movedim(dim, 1)  # (B, S, 3C, *plane)
    return stack.reshape(-1, *stack.shape[2:])


def _to_volume(s: torch.Tensor, batch: int, axis: int) -> torch.Tensor:
    """``(B * S, C, *plane)`` -> ``(B, C, *sp)`` with the slices back on ``axis``."""
    v = s.reshape(batch, -1, *s.shape[1:])  # (B, S, C, *plane)
    return v.movedim(1, 2 + axis)


class HDenseUNet(nn.Module):
    """2D DenseUNet on slices + 3D DenseUNet on the volume + HFF layer.

    Args:
        in_channels, out_channels: image channels and classes (incl. background).
        dense2d, dense3d: ``init_features``, ``growth_rate``, ``block_config``, ``decoder`` of the
            two DenseUNets (their last decoder widths must agree).
        slice_axis: spatial axis of the slices (``-1``: the last, the axial axis of ``(H, W, D)``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dense2d: dict[str, Any],
        dense3d: dict[str, Any],
        slice_axis: int = -1,
    ) -> None:
        super().__init__()
        self.axis = slice_axis % 3
        self.net2d = DenseUNet(2, 3 * in_channels, out_channels, **dense2d)
        self.net3d = DenseUNet(3, in_channels + out_channels, out_channels, slice_axis=self.axis, **dense3d)
        self.net3d.head = nn.Identity()  # only the 3D features are used
        if self.net2d.features != self.net3d.features:
            raise ValueError("h_denseunet: the 2D and 3D decoders must end with the same width")
        width = self.net3d.features
        self.hff = conv_norm_act(3, width, width, 3, bias=True)
        self.classifier = conv(3, width, out_channels, kernel_size=1)
        self.factor = tuple(4 if a == self.axis else 32 for a in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        """``x (B, C, *sp)`` (3D) -> logits ``(B, out_channels, *sp)``.

        In training mode ``{"logits": y_H, "aux": [y2d]}`` (the 2D logits stacked as a volume).
        Sizes are zero-padded to multiples of 32 in-plane and 4 along the slice axis and cropped.
        """
        spatial = x.shape[2:]
        x = pad_to_multiple(x, self.factor)
        feat2d, logit2d = self.net2d(_slices_with_neighbours(x, self.axis))
        feat2d, logit2d = (
            _to_volume(feat2d, x.shape[0], self.axis),
            _to_volume(logit2d, x.shape[0], self.axis),
        )
        feat3d, _ = self.net3d(torch.cat([x, torch.softmax(logit2d, dim=1)], dim=1))
        logits = crop_to(self.classifier(self.hff(feat2d + feat3d)), spatial)
        if not self.training:
            return logits
        return {"logits": logits, "aux": [crop_to(logit2d, spatial)]}


_PAPER_2D = {
    "init_features": 96,
    "growth_rate": 48,
    "block_config": (6, 12, 36, 24),
    "decoder": (768, 384, 96, 96, 64),
}
_PAPER_3D = {
    "init_features": 96,
    "growth_rate": 32,
    "block_config": (3, 4, 12, 8),
    "decoder": (504, 224, 192, 96, 64),
}


@register_model(
    "h_denseunet",
    family="hybrid",
    dims=(3,),
    description="H-DenseUNet: 2D DenseUNet on slices + 3D DenseUNet, hybrid feature fusion (3D only)",
    paper="https://arxiv.org/abs/1709.07330",
    small={
        "dense2d": {
            "init_features": 16,
            "growth_rate": 8,
            "block_config": (1, 1, 1, 1),
            "decoder": (20, 24, 16, 16, 16),
        },
        "dense3d": {
            "init_features": 16,
            "growth_rate": 8,
            "block_config": (1, 1, 1, 1),
            "decoder": (17, 20, 24, 16, 16),
        },
    },
    options="dense2d dense3d slice_axis",
    deep_supervision=DeepSupervision(constant_weights(0.5)),
)
def h_denseunet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    dense2d: dict[str, Any] | None = None,
    dense3d: dict[str, Any] | None = None,
    slice_axis: int = -1,
) -> nn.Module:
    """H-DenseUNet; defaults: 2D DenseUNet-167 + 3D DenseUNet-65 of the paper, ``lambda`` 0.5."""
    if spatial_dims != 3:
        raise ValueError(
            f"h_denseunet: 3D only (the 2D branch runs on the slices), got spatial_dims {spatial_dims}"
        )
    return HDenseUNet(
        in_channels,
        out_channels,
        dense2d=_PAPER_2D | dict(dense2d or {}),
        dense3d=_PAPER_3D | dict(dense3d or {}),
        slice_axis=slice_axis,
    )
