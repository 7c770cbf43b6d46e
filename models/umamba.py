"""Mamba family: U-Mamba Bot and U-Mamba Enc.

Ma, Li & Wang, "U-Mamba: Enhancing Long-range Dependency for Biomedical Image Segmentation",
2024, https://arxiv.org/abs/2401.04722.

A residual CNN U-Net (MONAI ``UnetResBlock`` encoder stages, ``UnetUpBlock`` decoder, one
implementation for 2D and 3D) with Mamba layers over the flattened spatial positions
(``models.ssm.SpatialMambaLayer``: LayerNorm, Mamba, residual):

- ``umamba_bot``: one Mamba layer at the bottleneck (the deepest encoder stage);
- ``umamba_enc``: a Mamba layer after every encoder stage.

The Mamba layers run the ``mamba_ssm`` CUDA kernel when it is installed and the input is on
CUDA, and a pure-PyTorch parallel scan otherwise (same weights either way).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import UnetOutBlock, UnetResBlock, UnetUpBlock
from torch import nn

from models.registry import register_model
from models.ssm import SpatialMambaLayer

_PAPER = "https://arxiv.org/abs/2401.04722"


class UMambaNet(nn.Module):
    """Residual U-Net with Mamba layers after chosen encoder stages.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: classes including background.
        features: channels per stage; stage 0 keeps the resolution, each later stage halves it.
        mamba_stages: indices of the encoder stages followed by a Mamba layer.
        blocks_per_stage: residual blocks per encoder stage.
        norm: MONAI norm name of the conv blocks.
        d_state: SSM state size.
        d_conv: causal convolution width of the Mamba blocks.
        expand: inner width factor of the Mamba blocks.
        scan_chunk: chunk length of the pure-PyTorch scan (``None``: whole sequence).
        use_kernel: ``"auto"``, ``"torch"`` or ``"cuda"`` (see ``models.ssm.MambaMixer``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int],
        mamba_stages: Sequence[int],
        blocks_per_stage: int,
        norm: str,
        d_state: int,
        d_conv: int,
        expand: int,
        scan_chunk: int | None,
        use_kernel: str,
    ) -> None:
        super().__init__()
        features = list(features)
        bad = [s for s in mamba_stages if not 0 <= s < len(features)]
        if bad:
            raise ValueError(f"mamba_stages {bad} outside 0..{len(features) - 1}")
        self.encoder = nn.ModuleList()
        self.mamba = nn.ModuleDict()
        for s, width in enumerate(features):
            blocks = [
                UnetResBlock(
                    spatial_dims,
                    in_channels if s == 0 else features[s - 1],
                    width,
                    kernel_size=3,
                    stride=1 if s == 0 else 2,
                    norm_name=norm,
                )
            ]
            blocks += [
                UnetResBlock(spatial_dims, width, width, kernel_size=3, stride=1, norm_name=norm)
                for _ in range(blocks_per_stage - 1)
            ]
            self.encoder.append(nn.Sequential(*blocks))
            if s in mamba_stages:
                self.mamba[str(s)] = SpatialMambaLayer(
                    width,
                    d_state=d_state,
                    d_conv=d_conv,
                    expand=expand,
                    scan_chunk=scan_chunk,
                    use_kernel=use_kernel,
                )
        self.decoder = nn.ModuleList(
            UnetUpBlock(
                spatial_dims,
                features[s],
                features[s - 1],
                kernel_size=3,
                stride=1,
                upsample_kernel_size=2,
                norm_name=norm,
            )
            for s in range(len(features) - 1, 0, -1)
        )
        self.head = UnetOutBlock(spatial_dims, features[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, *spatial)`` to logits ``(B, out_channels, *spatial)``.

        Every spatial size must be divisible by ``2 ** (len(features) - 1)``.
        """
        skips = []
        for s, stage in enumerate(self.encoder):
            x = stage(x)
            if str(s) in self.mamba:
                x = self.mamba[str(s)](x)
            skips.append(x)
        x = skips.pop()
        for up in self.decoder:
            x = up(x, skips.pop())
        return self.head(x)


@register_model(
    "umamba_bot",
    family="mamba",
    dims=(2, 3),
    description="U-Mamba Bot: residual U-Net with a Mamba layer at the bottleneck",
    paper=_PAPER,
)
def umamba_bot(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    features: Sequence[int] = (16, 32, 64, 128),
    blocks_per_stage: int = 1,
    norm: str = "instance",
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
    scan_chunk: int | None = 4096,
    use_kernel: str = "auto",
) -> nn.Module:
    """U-Mamba Bot; defaults: 4 stages of 16-128 channels, ``d_state`` 16, ``expand`` 2.

    Spatial sizes must be divisible by ``2 ** (len(features) - 1)`` (8 by default).
    """
    return UMambaNet(
        spatial_dims,
        in_channels,
        out_channels,
        features=features,
        mamba_stages=(len(features) - 1,),
        blocks_per_stage=blocks_per_stage,
        norm=norm,
        d_state=d_state,
        d_conv=d_conv,
        expand=expand,
        scan_chunk=scan_chunk,
        use_kernel=use_kernel,
    )


@register_model(
    "umamba_enc",
    family="mamba",
    dims=(2, 3),
    description="U-Mamba Enc: residual U-Net with a Mamba layer after every encoder stage",
    paper=_PAPER,
)
def umamba_enc(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    features: Sequence[int] = (16, 32, 64, 128),
    blocks_per_stage: int = 1,
    norm: str = "instance",
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
    scan_chunk: int | None = 4096,
    use_kernel: str = "auto",
) -> nn.Module:
    """U-Mamba Enc; defaults as ``umamba_bot``, with Mamba at every encoder stage.

    The full-resolution stage scans ``prod(spatial)`` tokens; ``scan_chunk`` bounds the memory
    of the pure-PyTorch scan (intermediates recomputed in the backward pass).
    """
    return UMambaNet(
        spatial_dims,
        in_channels,
        out_channels,
        features=features,
        mamba_stages=tuple(range(len(features))),
        blocks_per_stage=blocks_per_stage,
        norm=norm,
        d_state=d_state,
        d_conv=d_conv,
        expand=expand,
        scan_chunk=scan_chunk,
        use_kernel=use_kernel,
    )
