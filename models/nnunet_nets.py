"""nnU-Net's own networks, configured from a plan: the plain U-Net and the residual-encoder U-Net.

- nnU-Net: Isensee et al., "nnU-Net: a self-configuring method for deep learning-based biomedical
  image segmentation", Nature Methods 2021, https://doi.org/10.1038/s41592-020-01008-z.
- ResEnc U-Net: Isensee et al., "nnU-Net Revisited: A Call for Rigorous Validation in 3D Medical
  Image Segmentation", MICCAI 2024, https://arxiv.org/abs/2404.09556.

The networks are ``PlainConvUNet`` and ``ResidualEncoderUNet`` of nnU-Net's architecture package
(``dynamic-network-architectures``), built with the arguments nnU-Net's planners write into a
plan, with the patch and topology nnU-Net's planners derive
(:func:`models.layers.nnunet.plan_patch_size`, :func:`models.layers.nnunet.plan_network`) from
a median image shape and spacing: your dataset's (``segbench datasets --inspect``) or a
published plan's (:data:`models.layers.nnunet.PUBLISHED_PLANS`, option ``plan``), under the GPU
budget of the ``planner`` (``default``, ResEnc ``M`` / ``L`` / ``XL``). A given ``patch_size``
skips the patch search.

Inputs of any size are zero-padded to a multiple of the total stride and the logits cropped
back. The networks train with nnU-Net's deep supervision
(:data:`models.layers.nnunet.DEEP_SUPERVISION`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import nn

from models.layers.nnunet import DEEP_SUPERVISION, build_nnunet, resolve_plan
from models.registry import register_model

_OPTIONS = "plan planner patch_size median_shape spacing base_features max_features"


_register = functools.partial(
    register_model,
    family="cnn",
    options=_OPTIONS,
    small={"plan": "hippocampus", "base_features": 8, "max_features": 64},
    presets={"hippocampus": {"plan": "hippocampus"}, "acdc": {"plan": "acdc"}},
    deep_supervision=DEEP_SUPERVISION,
)
_RESENC_PRESETS = {"M": {"planner": "M"}, "L": {"planner": "L"}, "XL": {"planner": "XL"}}
"""nnU-Net Revisited's ResEnc presets: the planners' GPU budgets (the patch planned under them)."""


@_register(
    "nnunet_resenc",
    model_args={"kind": "resenc"},
    presets={"hippocampus": {"plan": "hippocampus"}, "acdc": {"plan": "acdc"}, **_RESENC_PRESETS},
    description="nnU-Net ResEnc U-Net (dynamic-network-architectures), topology from an nnU-Net plan",
    paper="https://arxiv.org/abs/2404.09556",
)
@_register(
    "nnunet_plain",
    model_args={"kind": "plain"},
    description="nnU-Net's plain U-Net (dynamic-network-architectures), topology from an nnU-Net plan",
    paper="https://doi.org/10.1038/s41592-020-01008-z",
)
def nnunet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kind: str,
    plan: str = "acdc",
    planner: str | None = None,
    patch_size: Sequence[int] | None = None,
    median_shape: Sequence[float] | None = None,
    spacing: Sequence[float] | None = None,
    base_features: int = 32,
    max_features: int | None = None,
) -> nn.Module:
    """nnU-Net's plain (2 convolutions per stage) or ResEnc (1-3-4-6-6-... residual blocks) U-Net.

    Args:
        kind: ``"plain"`` (``nnunet_plain``) or ``"resenc"`` (``nnunet_resenc``).
        plan: published shape (:data:`models.layers.nnunet.PUBLISHED_PLANS`: ``hippocampus``,
            ``acdc``; default ``acdc``, the paper size) planned when neither ``patch_size`` nor
            ``median_shape`` is given.
        planner: nnU-Net's planner whose GPU-memory budget bounds the patch
            (:data:`models.layers.nnunet.PLANNERS`: ``default``, ``M``, ``L``, ``XL``; ``None``:
            ``default`` for the plain U-Net, ``M`` for ResEnc). The presets ``M`` / ``L`` / ``XL``
            set it; they give the same network whenever the patch is capped by the median shape
            (both published shapes), and larger patches on large images.
        patch_size: the training patch (skips the planning), with its ``spacing``.
        median_shape, spacing: the median image shape at the target spacing and that spacing,
            e.g. ``median_shape_at_spacing`` and ``spacing`` of ``segbench datasets --inspect
            --json``; the patch is planned from them.
        base_features, max_features: features of stage 0 (doubling per stage) and their cap
            (``None``: 320 in 3D, 512 in 2D).

    Returns:
        :class:`models.layers.nnunet.NnUNetNet`: ``(B, in_channels, *spatial)`` -> logits
        ``(B, out_channels, *spatial)``, any spatial size (padded to the total stride, cropped back).

    Raises:
        models.layers.nnunet.PlanError: an unknown ``plan`` or a patch / spacing that does not fit.
    """
    topology = resolve_plan(
        spatial_dims,
        kind=kind,
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
    return build_nnunet(
        kind,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        plan=topology,
        side_outputs=DEEP_SUPERVISION is not None,
    )
