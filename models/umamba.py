"""Mamba family: U-Mamba Bot and U-Mamba Enc.

Ma, Li & Wang, "U-Mamba: Enhancing Long-range Dependency for Biomedical Image Segmentation",
2024, https://arxiv.org/abs/2401.04722.

The shared residual CNN U-Net (``models.mixer_unet.MixerUNet``: MONAI ``UnetResBlock`` encoder
stages, residual up-blocks, one implementation for 2D and 3D) with Mamba layers over the
flattened spatial positions (``models.ssm.SpatialMambaLayer``: LayerNorm, Mamba, residual):

- ``umamba_bot``: one Mamba layer at the bottleneck (the deepest encoder stage);
- ``umamba_enc``: a Mamba layer after every encoder stage.

The Mamba layers run the ``mamba_ssm`` CUDA kernel when it is installed and the input is on
CUDA, and a pure-PyTorch parallel scan otherwise (same weights either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from models.mixer_unet import MixerUNet
from models.registry import register_model
from models.ssm import SpatialMambaLayer

_PAPER = "https://arxiv.org/abs/2401.04722"


def _umamba(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    features: Sequence[int],
    mamba_stages: Sequence[int],
    blocks_per_stage: int,
    norm: str,
    **mamba_kw: Any,
) -> MixerUNet:
    """The shared residual U-Net with a ``SpatialMambaLayer`` after each of ``mamba_stages``.

    ``mamba_kw``: ``d_state``, ``d_conv``, ``expand``, ``scan_chunk``, ``use_kernel`` of
    :class:`models.ssm.SpatialMambaLayer`.
    """
    bad = [s for s in mamba_stages if not 0 <= s < len(features)]
    if bad:
        raise ValueError(f"mamba_stages {bad} outside 0..{len(features) - 1}")
    mixers = {f"enc{s}": SpatialMambaLayer(features[s], **mamba_kw) for s in mamba_stages}
    return MixerUNet(
        spatial_dims,
        in_channels,
        out_channels,
        features=features,
        mixers=mixers,
        norm=norm,
        blocks_per_stage=blocks_per_stage,
    )


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

    Other spatial sizes are padded to a multiple of ``2 ** (len(features) - 1)`` and cropped back.
    """
    return _umamba(
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
    return _umamba(
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
