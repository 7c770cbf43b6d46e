"""Mamba family: U-Mamba Bot and U-Mamba Enc, two variants of one builder.

Ma, Li & Wang, "U-Mamba: Enhancing Long-range Dependency for Biomedical Image Segmentation",
2024, https://arxiv.org/abs/2401.04722.

The shared residual CNN U-Net (:class:`models.layers.mixer_unet.MixerUNet`: MONAI
``UnetResBlock`` encoder stages, residual up-blocks, one implementation for 2D and 3D) with Mamba
layers over the flattened spatial positions (:class:`models.layers.ssm.SpatialMambaLayer`:
LayerNorm, Mamba, residual). The variants differ in where the Mamba layers sit (``mamba_at``,
fixed by each registration):

- ``umamba_bot``: one Mamba layer at the bottleneck (the deepest encoder stage);
- ``umamba_enc``: a Mamba layer after every encoder stage.

The Mamba layers run the ``mamba_ssm`` CUDA kernel when it is installed and the input is on
CUDA, and a pure-PyTorch parallel scan otherwise (same weights either way).

The paper builds U-Mamba on nnU-Net's residual U-Net; that configuration, with presets sized as
published, is ``umamba_bot_resenc`` / ``umamba_enc_resenc`` (:mod:`models.resenc_hybrids`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import nn

from models.layers.mixer_unet import MixerUNet
from models.layers.ssm import SpatialMambaLayer
from models.registry import register_model

_variant = functools.partial(
    register_model,
    family="mamba",
    paper="https://arxiv.org/abs/2401.04722",
    options="features blocks_per_stage norm d_state d_conv expand scan_chunk use_kernel",
)


@_variant(
    "umamba_enc",
    model_args={"mamba_at": "encoder"},
    description="U-Mamba Enc: residual U-Net with a Mamba layer after every encoder stage",
)
@_variant(
    "umamba_bot",
    model_args={"mamba_at": "bottleneck"},
    description="U-Mamba Bot: residual U-Net with a Mamba layer at the bottleneck",
)
def umamba(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    mamba_at: str,
    features: Sequence[int] = (16, 32, 64, 128),
    blocks_per_stage: int = 1,
    norm: str = "instance",
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
    scan_chunk: int | None = 4096,
    use_kernel: str = "auto",
) -> nn.Module:
    """U-Mamba; defaults: 4 stages of 16-128 channels, ``d_state`` 16, ``expand`` 2.

    Args:
        mamba_at: ``"bottleneck"`` (U-Mamba Bot) or ``"encoder"`` (U-Mamba Enc, every stage).
        features: channels per stage; other spatial sizes are padded to a multiple of
            ``2 ** (len(features) - 1)`` and cropped back.
        blocks_per_stage, norm: residual blocks per encoder stage and their MONAI norm.
        d_state, d_conv, expand, scan_chunk, use_kernel: see :class:`models.layers.ssm.SpatialMambaLayer`.
            The full-resolution stage of U-Mamba Enc scans ``prod(spatial)`` tokens;
            ``scan_chunk`` bounds the memory of the pure-PyTorch scan (intermediates recomputed
            in the backward pass).
    """
    stages = {"bottleneck": (len(features) - 1,), "encoder": tuple(range(len(features)))}[mamba_at]
    mamba_kw = dict(
        d_state=d_state, d_conv=d_conv, expand=expand, scan_chunk=scan_chunk, use_kernel=use_kernel
    )
    mixers = {f"enc{s}": SpatialMambaLayer(features[s], **mamba_kw) for s in stages}
    return MixerUNet(
        spatial_dims,
        in_channels,
        out_channels,
        features=features,
        mixers=mixers,
        norm=norm,
        blocks_per_stage=blocks_per_stage,
    )
