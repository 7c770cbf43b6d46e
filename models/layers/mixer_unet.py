"""A residual U-Net skeleton with pluggable token mixers on chosen levels (shared by families).

The encoder is a stack of MONAI ``UnetResBlock`` (stride 2 from level 1 on), the decoder MONAI
``UnetrUpBlock`` (transposed-conv upsampling, residual block) and a ``UnetOutBlock`` head — one
implementation for 2D and 3D. A *mixer* is any module mapping a feature map
``(B, C, *spatial)`` to the same shape (a Vision-LSTM stack, a graph convolution over the grid,
...). Mixers are placed by key:

- ``"enc{j}"``: after encoder level ``j`` (the last level is the bottleneck), before its skip;
- ``"dec{j}"``: after the decoder block that outputs level ``j`` (``j < len(features) - 1``).

Used by :mod:`models.xlstm_unet` (ViL mixers, :mod:`models.layers.mlstm`), :mod:`models.umamba`
(Mamba mixers, :mod:`models.layers.ssm`) and :mod:`models.graph` (graph mixers,
:mod:`models.layers.graph`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.networks.blocks import UnetOutBlock, UnetrUpBlock
from torch import nn

from models.layers.padding import crop_to, pad_to_multiple
from models.layers.resnet import residual_stage


class MixerUNet(nn.Module):
    """Residual U-Net whose levels may carry extra feature-map mixers.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        features: channels per level; level ``j > 0`` halves the resolution.
        mixers: ``{"enc{j}" | "dec{j}": module}`` (see the module docstring); each module must
            keep the shape ``(B, features[j], *spatial_j)``.
        norm: MONAI norm name of the convolution blocks.
        blocks_per_stage: residual blocks per encoder level (the first one strides).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 32, 64, 128),
        mixers: Mapping[str, nn.Module] | None = None,
        norm: str = "instance",
        blocks_per_stage: int = 1,
    ) -> None:
        super().__init__()
        feats = list(features)
        last = len(feats) - 1
        mixers = dict(mixers or {})
        valid = {f"enc{j}" for j in range(last + 1)} | {f"dec{j}" for j in range(last)}
        if set(mixers) - valid:
            raise ValueError(f"mixer keys {sorted(set(mixers) - valid)} not in {sorted(valid)}")
        self.factor = 2**last
        self.encoder = nn.ModuleList(
            residual_stage(spatial_dims, cin, cout, blocks_per_stage, 1 if j == 0 else 2, norm)
            for j, (cin, cout) in enumerate(zip([in_channels, *feats[:-1]], feats))
        )
        self.decoder = nn.ModuleList(
            UnetrUpBlock(
                spatial_dims,
                feats[j + 1],
                feats[j],
                kernel_size=3,
                upsample_kernel_size=2,
                norm_name=norm,
                res_block=True,
            )
            for j in reversed(range(last))
        )
        self.mixers = nn.ModuleDict(mixers)
        self.head = UnetOutBlock(spatial_dims, feats[0], out_channels)

    def _mix(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return self.mixers[key](x) if key in self.mixers else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``.

        Spatial sizes that are not multiples of ``2 ** (len(features) - 1)`` are zero-padded on
        the high side and the logits cropped back.
        """
        spatial = x.shape[2:]
        x = pad_to_multiple(x, self.factor)
        skips = []
        for j, block in enumerate(self.encoder):
            x = self._mix(f"enc{j}", block(x))
            skips.append(x)
        for j, (block, skip) in zip(reversed(range(len(skips) - 1)), zip(self.decoder, reversed(skips[:-1]))):
            x = self._mix(f"dec{j}", block(x, skip))
        return crop_to(self.head(x), spatial)
