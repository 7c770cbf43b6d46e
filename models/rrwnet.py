"""RRWNet: a base U-Net plus a recursively applied refinement U-Net (shared weights).

Morano et al., "RRWNet: Recursive Refinement Network for Effective Retinal Artery/Vein
Segmentation and Classification", Expert Systems with Applications 2024,
https://arxiv.org/abs/2402.03166 (Sec. 3, Fig. 2; official code ``j-morano/rrwnet``).

- **Base subnetwork**: a plain U-Net (Ronneberger et al. 2015: 5 levels, two 3x3 conv-ReLU per
  level, no normalisation, max-pool down, 2x2 transposed-conv up, 64 base channels) maps the image
  to initial segmentation maps.
- **Recursive refinement (RR) subnetwork**: a second U-Net of the same shape that sees only the
  current *maps* (not the image) and outputs refined maps; it is applied ``refine_steps`` times
  (1 + 5 in the paper) with the **same weights** at every step, each step refining the previous
  step's output.
- **Loss** (RRLoss of the official code): ``L(base) + sum_i i * L(r_i) / Z`` over the ``K``
  refinement outputs ``r_1..r_K``, ``Z = K (K + 1) / 2``, one loss ``L`` for every output.
  segbench applies the run's loss to the final output ``r_K`` with weight 1 and, as deep
  supervision declared at registration (:func:`models.deep_supervision.recursive_weights`), to
  the base and intermediate outputs with the other weights times ``Z / K``:
  ``Z/K * L(base) + sum_{i<K} i/K * L(r_i)`` (the paper's loss times ``Z / K``).

segbench's softmax convention: the maps are the ``out_channels`` class logits, passed between
steps as softmax probabilities (the paper passes sigmoid maps of artery, vein and vessel tree and
refines only the artery/vein maps; here every class map is refined).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets.basic_unet import Down, TwoConv, UpCat
from torch import nn

from models.deep_supervision import DeepSupervision, recursive_weights
from models.layers.conv import conv
from models.layers.padding import crop_to, pad_to_multiple
from models.registry import register_model


class PlainUNet(nn.Module):
    """Ronneberger U-Net from MONAI's basic-U-Net blocks: ``(B, C_in, *sp)`` -> ``(B, C_out, *sp)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: input and output channels.
        features: channels per level (the paper: 64, 128, 256, 512, 1024); each decoder level
            halves the channels with a 2x transposed convolution, concatenates the skip and runs
            two 3x3 conv-ReLU layers.
        norm: MONAI norm name, ``None`` (the paper) for none.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        norm: str | tuple | None = None,
    ) -> None:
        super().__init__()
        f = list(features)
        opts: dict[str, Any] = dict(act="relu", norm=norm, bias=True)
        self.inc = TwoConv(spatial_dims, in_channels, f[0], **opts)
        self.down = nn.ModuleList(Down(spatial_dims, a, b, **opts) for a, b in zip(f[:-1], f[1:]))
        self.up = nn.ModuleList(
            UpCat(spatial_dims, f[j + 1], f[j], f[j], **opts) for j in reversed(range(len(f) - 1))
        )
        self.head = conv(spatial_dims, f[0], out_channels, kernel_size=1)
        self.factor = 2 ** (len(f) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sizes that are not multiples of ``2 ** (levels - 1)`` are zero-padded and cropped back."""
        spatial = x.shape[2:]
        skips = [self.inc(pad_to_multiple(x, self.factor))]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.up:
            h = up(h, skips.pop())
        return crop_to(self.head(h), spatial)


@register_model(
    "rrwnet",
    family="cnn",
    description="RRWNet: base U-Net + recursive refinement U-Net with weights shared over steps",
    paper="https://arxiv.org/abs/2402.03166",
    options="features refine_steps norm",
    small={"features": (8, 16, 32, 64), "refine_steps": 2, "norm": "instance"},
    deep_supervision=DeepSupervision(recursive_weights),
)
class RRWNet(nn.Module):
    """Base U-Net + one refinement U-Net applied ``refine_steps`` times.

    Defaults as the paper (two 64-base U-Nets, 1 + 5 refinement steps, no norm). segbench's small
    size (4 levels of 8-64 channels, 2 refinement steps) adds instance norm: the norm-free U-Net
    needs a much smaller learning rate and many more steps on a CPU budget.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        features: channels per level of both U-Nets.
        refine_steps: applications of the shared refinement U-Net (``K``).
        norm: MONAI norm name of the convolutions, ``None`` (the paper) for none.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (64, 128, 256, 512, 1024),
        refine_steps: int = 6,
        norm: str | tuple | None = None,
    ) -> None:
        super().__init__()
        if refine_steps < 1:
            raise ValueError(f"rrwnet: refine_steps must be >= 1, got {refine_steps}")
        features = tuple(features)
        self.base = PlainUNet(spatial_dims, in_channels, out_channels, features, norm)
        self.refiner = PlainUNet(spatial_dims, out_channels, out_channels, features, norm)
        self.refine_steps = refine_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        """``x (B, in_channels, *spatial)`` -> final refined logits ``(B, out_channels, *spatial)``.

        In training mode ``{"logits": r_K, "aux": [base, r_1, ..., r_{K-1}]}``.
        """
        maps = self.base(x)
        outs = [maps]
        for _ in range(self.refine_steps):
            maps = self.refiner(torch.softmax(maps, dim=1))
            outs.append(maps)
        if not self.training:
            return maps
        return {"logits": maps, "aux": outs[:-1]}
