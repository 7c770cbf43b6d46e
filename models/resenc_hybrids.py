"""U-Mamba and xLSTM-UNet on nnU-Net's residual-encoder U-Net: the backbone of ``nnunet_resenc``
plus sequence layers, so that a comparison with ``nnunet_resenc`` isolates the block.

- U-Mamba: Ma, Li & Wang, "U-Mamba: Enhancing Long-range Dependency for Biomedical Image
  Segmentation", 2024, https://arxiv.org/abs/2401.04722 (built on nnU-Net's residual U-Net).
- xLSTM-UNet: Chen et al., "xLSTM-UNet can be an Effective 2D & 3D Medical Image Segmentation
  Backbone with Vision-LSTM (ViL) better than its Mamba Counterpart", 2024,
  https://arxiv.org/abs/2407.01530.

The backbone is :func:`models.layers.nnunet.build_nnunet` ``("resenc", ...)`` with the same plan
options as ``nnunet_resenc`` (``plan``, ``planner``, ``patch_size``, ``median_shape``, ``spacing``,
``base_features``, ``max_features``; the patch is planned for the backbone, as nnU-Net's planner
would for ``nnunet_resenc``) and its presets ``small``, ``paper``, ``hippocampus``, ``acdc``,
``M``, ``L``, ``XL``.
The layers act on an encoder stage's output ``(B, C_s, *spatial_s)``, keep its shape and feed
both the next stage and the skip connection:

- ``*_bot_resenc``: one layer on the bottleneck (the deepest stage);
- ``*_enc_resenc``: one layer after every encoder stage (the full-resolution one included:
  ``prod(spatial)`` tokens, so keep patches small on a CPU).

The Mamba layer is :class:`models.layers.ssm.SpatialMambaLayer` (``mamba_ssm`` CUDA kernel when
installed and on CUDA, the pure-PyTorch scan otherwise); the xLSTM layer is
:class:`models.layers.mlstm.ViLStack` (``mlstm_kernels`` when installed and on CUDA). The existing
``umamba_*`` / ``xlstm_unet*`` models keep their own (MONAI-block) backbone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import nn

from models.layers.mlstm import ViLStack
from models.layers.nnunet import DEEP_SUPERVISION, build_nnunet, resolve_plan
from models.layers.ssm import SpatialMambaLayer
from models.registry import register_model

_PLAN_OPTIONS = "plan planner patch_size median_shape spacing base_features max_features"
_SMALL = {"plan": "hippocampus", "base_features": 8, "max_features": 64}
_PRESETS = {
    "hippocampus": {"plan": "hippocampus"},
    "acdc": {"plan": "acdc"},
    **{size: {"planner": size} for size in ("M", "L", "XL")},
}
_AT = {"bottleneck": "bottleneck", "encoder": "every encoder stage"}


def _stages(mixer_at: str, n_stages: int) -> range:
    """Encoder stages that get a layer: the bottleneck, or every stage."""
    if mixer_at not in _AT:
        raise ValueError(f"mixer_at {mixer_at!r} is not one of {', '.join(_AT)}")
    return range(n_stages - 1, n_stages) if mixer_at == "bottleneck" else range(n_stages)


_mamba = functools.partial(
    register_model,
    family="mamba",
    paper="https://arxiv.org/abs/2401.04722",
    options=f"{_PLAN_OPTIONS} d_state d_conv expand scan_chunk use_kernel",
    small=_SMALL,
    presets=_PRESETS,
    deep_supervision=DEEP_SUPERVISION,
)


@_mamba(
    "umamba_enc_resenc",
    model_args={"mixer_at": "encoder"},
    description="U-Mamba Enc on nnU-Net's ResEnc U-Net: a Mamba layer after every encoder stage",
)
@_mamba(
    "umamba_bot_resenc",
    model_args={"mixer_at": "bottleneck"},
    description="U-Mamba Bot on nnU-Net's ResEnc U-Net: one Mamba layer at the bottleneck",
)
def umamba_resenc(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    mixer_at: str,
    plan: str = "acdc",
    planner: str | None = None,
    patch_size: Sequence[int] | None = None,
    median_shape: Sequence[float] | None = None,
    spacing: Sequence[float] | None = None,
    base_features: int = 32,
    max_features: int | None = None,
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
    scan_chunk: int | None = 4096,
    use_kernel: str = "auto",
) -> nn.Module:
    """nnU-Net's ResEnc U-Net with Mamba layers (U-Mamba's ``d_state`` 16, ``d_conv`` 4, ``expand`` 2).

    Args:
        mixer_at: ``"bottleneck"`` (Bot) or ``"encoder"`` (Enc).
        plan, planner, patch_size, median_shape, spacing, base_features, max_features: the
            backbone's plan, as for ``nnunet_resenc`` (:func:`models.nnunet_nets.nnunet`).
        d_state, d_conv, expand, scan_chunk, use_kernel: see :class:`models.layers.ssm.SpatialMambaLayer`.

    Returns:
        ``(B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``, any spatial size.
    """
    topology = resolve_plan(
        spatial_dims,
        kind="resenc",
        in_channels=in_channels,
        out_channels=out_channels,
        plan=plan,
        planner=planner,
        patch_size=patch_size,
        median_shape=median_shape,
        spacing=spacing,
        base_features=base_features,
        max_features=max_features,
    )
    layer = functools.partial(
        SpatialMambaLayer,
        d_state=d_state,
        d_conv=d_conv,
        expand=expand,
        scan_chunk=scan_chunk,
        use_kernel=use_kernel,
    )
    mixers = {s: layer(topology.features[s]) for s in _stages(mixer_at, topology.n_stages)}
    return build_nnunet(
        "resenc",
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        plan=topology,
        mixers=mixers,
        side_outputs=DEEP_SUPERVISION is not None,
    )


_xlstm = functools.partial(
    register_model,
    family="xlstm",
    paper="https://arxiv.org/abs/2407.01530",
    options=f"{_PLAN_OPTIONS} vil_depth num_heads expansion dropout backend chunk_size",
    small=_SMALL,
    presets=_PRESETS,
    deep_supervision=DEEP_SUPERVISION,
)


@_xlstm(
    "xlstm_enc_resenc",
    model_args={"mixer_at": "encoder"},
    description="xLSTM-UNet Enc on nnU-Net's ResEnc U-Net: a ViL stack after every encoder stage",
)
@_xlstm(
    "xlstm_bot_resenc",
    model_args={"mixer_at": "bottleneck"},
    description="xLSTM-UNet Bot on nnU-Net's ResEnc U-Net: one ViL stack at the bottleneck",
)
def xlstm_resenc(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    mixer_at: str,
    plan: str = "acdc",
    planner: str | None = None,
    patch_size: Sequence[int] | None = None,
    median_shape: Sequence[float] | None = None,
    spacing: Sequence[float] | None = None,
    base_features: int = 32,
    max_features: int | None = None,
    vil_depth: int = 2,
    num_heads: int = 4,
    expansion: int = 2,
    dropout: float = 0.0,
    backend: str = "auto",
    chunk_size: int = 256,
) -> nn.Module:
    """nnU-Net's ResEnc U-Net with Vision-LSTM stacks (the settings of ``xlstm_unet``).

    Args:
        mixer_at: ``"bottleneck"`` (Bot) or ``"encoder"`` (Enc).
        plan, planner, patch_size, median_shape, spacing, base_features, max_features: the
            backbone's plan, as for ``nnunet_resenc`` (:func:`models.nnunet_nets.nnunet`).
        vil_depth, num_heads, expansion, dropout, backend, chunk_size: see
            :class:`models.layers.mlstm.ViLStack` and :func:`models.xlstm_unet.xlstm_unet`.

    Returns:
        ``(B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``, any spatial size.
    """
    topology = resolve_plan(
        spatial_dims,
        kind="resenc",
        in_channels=in_channels,
        out_channels=out_channels,
        plan=plan,
        planner=planner,
        patch_size=patch_size,
        median_shape=median_shape,
        spacing=spacing,
        base_features=base_features,
        max_features=max_features,
    )
    layer = functools.partial(
        ViLStack,
        depth=vil_depth,
        num_heads=num_heads,
        expansion=expansion,
        dropout=dropout,
        backend=backend,
        chunk_size=chunk_size,
    )
    mixers = {s: layer(topology.features[s]) for s in _stages(mixer_at, topology.n_stages)}
    return build_nnunet(
        "resenc",
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        plan=topology,
        mixers=mixers,
        side_outputs=DEEP_SUPERVISION is not None,
    )
