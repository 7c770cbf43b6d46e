"""nnU-Net's U-Nets from a plan: the topology rules, and the wrapper segbench trains.

:func:`plan_network` turns a patch size and a voxel spacing into the topology nnU-Net's planners
(``ExperimentPlanner`` / ``ResEncUNetPlanner``) write into a plan: an axis is pooled while its
feature map keeps at least 4 voxels (a lone axis: 12) and its spacing is within 2x of the finest;
its kernels become 3-wide once its spacing is within 2x of the finest (always in the
bottleneck); features start at 32 and double per stage, capped at 320 (3D) / 512 (2D).
:func:`plan_patch_size` finds the patch the way nnU-Net's planners do, from a median image shape
and spacing under a planner's GPU budget (:data:`PLANNERS`: ``default``, ResEnc ``M`` / ``L`` /
``XL``). :func:`build_nnunet` builds nnU-Net's own ``PlainConvUNet`` / ``ResidualEncoderUNet``
(``dynamic-network-architectures``) with the plan's arguments inside :class:`NnUNetNet`, which
pads inputs to a multiple of the total stride, crops the logits back, can return nnU-Net's deep
supervision side outputs and runs optional sequence layers (``mixers``) after encoder stages
(the U-Mamba and xLSTM-UNet hybrids share the backbone this way).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.errors import UserError
from models.deep_supervision import DeepSupervision, halving_weights
from models.layers.padding import crop_to, pad_to_multiple

DEEP_SUPERVISION: DeepSupervision | None = DeepSupervision(halving_weights)
"""Deep supervision of the nnU-Net nets and the ResEnc hybrids (their registrations' field), as
nnU-Net trains them: side logits of every decoder stage, weights ``2^-k`` with the coarsest at 0
(:func:`~models.deep_supervision.halving_weights`), the builders pass ``side_outputs=True`` to
:class:`NnUNetNet`. Every side head is used in training, so a DDP run finds no unused parameter."""

PUBLISHED_PLANS: dict[str, dict[int, tuple[tuple[float, ...], tuple[float, ...]]]] = {
    # MSD Task04 Hippocampus (nnU-Net Dataset004): 3d_fullres patch 40x56x40, 2d 56x40.
    "hippocampus": {3: ((36, 50, 35), (1.0, 1.0, 1.0)), 2: ((50, 35), (1.0, 1.0))},
    # ACDC-like cine MRI (nnU-Net Dataset027's shape): 5 mm slices of 1.5625 mm pixels,
    # 3d_fullres patch 20x256x224, 2d 256x224.
    "acdc": {3: ((18, 256, 216), (5.0, 1.5625, 1.5625)), 2: ((256, 216), (1.5625, 1.5625))},
}
"""``{plan: {spatial_dims: (median_shape, spacing)}}``: median image shapes at the target spacing
from which nnU-Net's planners derive the patch sizes of their published plans (in the comments)."""

PLANNERS: dict[str, dict[int, float]] = {
    "default": {3: 560e6, 2: 85e6},  # ExperimentPlanner (plain U-Net), 8 GB
    "M": {3: 680e6, 2: 135e6},  # nnUNetPlannerResEncM (and ResEncUNetPlanner), 8 GB
    "L": {3: 2100e6, 2: 380e6},  # nnUNetPlannerResEncL, 24 GB
    "XL": {3: 3600e6, 2: 560e6},  # nnUNetPlannerResEncXL, 40 GB
}
"""nnU-Net's budgets per planner: the largest summed feature-map size
(``compute_conv_feature_map_size``, deep supervision on) of a patch at the planner's GPU memory
target. The presets M, L and XL differ only in this budget, hence only in the patch."""

RESENC_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
"""Residual blocks per encoder stage of nnU-Net's ResEnc planners (M, L and XL alike)."""

DNA_INSTALL = "pip install --no-deps 'dynamic-network-architectures>=0.4'"
"""How to install nnU-Net's architecture package without its timm / torchvision pin."""


class MissingPackageError(UserError):
    """A model needs a package that is not installed (one line saying how to install it)."""


class PlanError(UserError):
    """A ``plan``, ``patch_size`` or ``spacing`` option that does not describe a network."""


@dataclass(frozen=True)
class NetworkPlan:
    """nnU-Net's network topology: one entry per resolution stage (the first has stride 1)."""

    features: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]

    @property
    def n_stages(self) -> int:
        """Number of resolution stages (the last is the bottleneck)."""
        return len(self.features)

    @property
    def total_stride(self) -> tuple[int, ...]:
        """Downsampling factor of the bottleneck per axis (inputs must be multiples of it)."""
        return tuple(math.prod(s[d] for s in self.strides) for d in range(len(self.strides[0])))


def plan_network(
    patch_size: Sequence[int],
    spacing: Sequence[float],
    *,
    base_features: int = 32,
    max_features: int | None = None,
    min_edge: int = 4,
) -> NetworkPlan:
    """nnU-Net's topology for a patch of ``patch_size`` voxels of ``spacing`` (one entry per axis).

    Args:
        patch_size: training patch in voxels.
        spacing: voxel spacing of the patch (the target spacing), same axis order.
        base_features: features of the first stage (nnU-Net: 32); each stage doubles them.
        max_features: cap on the features per stage (``None``: 320 in 3D, 512 in 2D).
        min_edge: smallest edge of a bottleneck feature map (nnU-Net: 4).

    Raises:
        PlanError: entries that are not positive or whose counts differ.
    """
    size = [float(p) for p in patch_size]
    current = [float(s) for s in spacing]
    dims = len(size)
    if dims not in (2, 3) or len(current) != dims or min(size) < 1 or min(current) <= 0:
        raise PlanError(
            f"plan: patch_size {list(patch_size)} and spacing {list(spacing)} need 2 or 3 positive "
            "entries each, one per axis"
        )
    strides: list[tuple[int, ...]] = [(1,) * dims]
    kernels: list[tuple[int, ...]] = []
    kernel = [1] * dims
    while True:
        axes = [d for d in range(dims) if size[d] >= 2 * min_edge]
        if not axes:
            break
        finest = min(current[d] for d in axes)
        axes = [d for d in axes if current[d] / finest < 2]
        if len(axes) == 1 and size[axes[0]] < 3 * min_edge:
            break  # nnU-Net pools a lone axis only while it keeps 3x the minimum edge
        overall_finest = min(current)
        kernel = [3 if k == 3 or current[d] / overall_finest < 2 else 1 for d, k in enumerate(kernel)]
        for d in axes:
            current[d] *= 2
            size[d] = math.ceil(size[d] / 2)
        strides.append(tuple(2 if d in axes else 1 for d in range(dims)))
        kernels.append(tuple(kernel))
    if len(strides) < 2:
        raise PlanError(
            f"plan: patch_size {list(patch_size)} is too small to pool "
            f"(an axis needs >= {2 * min_edge} voxels)"
        )
    kernels.append((3,) * dims)  # the bottleneck always has 3-wide kernels
    cap = max_features if max_features is not None else (320 if dims == 3 else 512)
    features = tuple(min(cap, base_features * 2**i) for i in range(len(strides)))
    return NetworkPlan(features=features, kernel_sizes=tuple(kernels), strides=tuple(strides))


def _padded(patch: Sequence[float], plan: NetworkPlan) -> list[int]:
    """``patch`` rounded up to a multiple of ``plan``'s total stride per axis (nnU-Net's ``pad_shape``)."""
    return [int(math.ceil(p / f) * f) for p, f in zip(patch, plan.total_stride)]


def feature_map_size(
    kind: str, plan: NetworkPlan, patch_size: Sequence[int], in_channels: int, out_channels: int
) -> int:
    """nnU-Net's memory estimate of a patch: the summed feature-map size of its ``kind`` U-Net
    with deep supervision (``compute_conv_feature_map_size``), built on the meta device."""
    with torch.device("meta"):
        net = _unet(kind, len(patch_size), in_channels, out_channels, plan, deep_supervision=True)
    return int(net.compute_conv_feature_map_size(list(patch_size)))


def plan_patch_size(
    median_shape: Sequence[float],
    spacing: Sequence[float],
    *,
    kind: str,
    planner: str,
    in_channels: int,
    out_channels: int,
    base_features: int = 32,
    max_features: int | None = None,
) -> tuple[tuple[int, ...], NetworkPlan]:
    """nnU-Net's patch size and topology for images of ``median_shape`` voxels of ``spacing``.

    As nnU-Net's planners: a patch of 256³ (2D: 2048²) voxels with the same physical extent on
    every axis, capped by the median shape and padded to the topology's total stride, then cut
    on the axis largest relative to the median shape, by that axis's divisibility step, until the
    estimate (:func:`feature_map_size`) fits the ``planner``'s budget (:data:`PLANNERS`).

    Returns:
        ``(patch_size, plan)``.
    """
    if planner not in PLANNERS:
        raise PlanError(f"planner: {planner!r} is not one of {', '.join(PLANNERS)}")
    dims = len(spacing)
    if len(median_shape) != dims or min(median_shape) < 1:
        raise PlanError(f"median_shape {list(median_shape)}: need {dims} positive entries, one per axis")
    inverse = 1 / np.asarray(spacing, dtype=np.float64)
    volume = 256.0**3 if dims == 3 else 2048.0**2
    initial = [round(v) for v in inverse * (volume / np.prod(inverse)) ** (1 / dims)]
    median = [float(m) for m in median_shape]
    options = {"base_features": base_features, "max_features": max_features}
    patch: list[float] = [min(i, m) for i, m in zip(initial, median)]
    plan = plan_network(patch, spacing, **options)
    patch = _padded(patch, plan)
    budget = PLANNERS[planner][dims]
    while feature_map_size(kind, plan, patch, in_channels, out_channels) > budget:
        axis = int(np.argsort([p / m for p, m in zip(patch, median)])[-1])
        smaller = list(patch)
        smaller[axis] -= plan.total_stride[axis]
        patch[axis] -= plan_network(smaller, spacing, **options).total_stride[axis]
        plan = plan_network(patch, spacing, **options)
        patch = _padded(patch, plan)
    return tuple(int(p) for p in patch), plan


def resolve_plan(
    spatial_dims: int,
    *,
    kind: str,
    in_channels: int,
    out_channels: int,
    plan: str,
    planner: str | None,
    patch_size: Sequence[int] | None,
    median_shape: Sequence[float] | None,
    spacing: Sequence[float] | None,
    base_features: int,
    max_features: int | None,
) -> NetworkPlan:
    """The topology the model options describe (the options of ``nnunet_plain`` and co.).

    ``patch_size`` (+ ``spacing``, default 1) fixes the patch; otherwise the patch is planned by
    :func:`plan_patch_size` from ``median_shape`` + ``spacing``, or from the published ``plan``'s
    (:data:`PUBLISHED_PLANS`), with the ``planner``'s budget (``None``: ``"default"`` for the
    plain U-Net, ``"M"`` for the ResEnc one).
    """
    if plan not in PUBLISHED_PLANS:
        raise PlanError(f"plan: {plan!r} is not one of {', '.join(PUBLISHED_PLANS)}")
    if patch_size is not None and median_shape is not None:
        raise PlanError("give patch_size or median_shape, not both (median_shape plans the patch)")
    shape = patch_size if patch_size is not None else median_shape
    plan_shape, plan_spacing = PUBLISHED_PLANS[plan][spatial_dims]
    if shape is None:
        shape, spacing = plan_shape, (plan_spacing if spacing is None else spacing)
    spacing = (1.0,) * len(shape) if spacing is None else spacing
    if len(shape) != spatial_dims or len(spacing) != spatial_dims:
        raise PlanError(
            f"patch_size / median_shape {list(shape)} and spacing {list(spacing)}: "
            f"need {spatial_dims} entries for {spatial_dims}D data"
        )
    if patch_size is not None:
        return plan_network(patch_size, spacing, base_features=base_features, max_features=max_features)
    return plan_patch_size(
        shape,
        spacing,
        kind=kind,
        planner=planner or ("default" if kind == "plain" else "M"),
        in_channels=in_channels,
        out_channels=out_channels,
        base_features=base_features,
        max_features=max_features,
    )[1]


def backbone_kwargs(spatial_dims: int, plan: NetworkPlan) -> dict[str, Any]:
    """The arguments nnU-Net's plan gives both U-Nets besides the blocks per stage and classes."""
    return {
        "n_stages": plan.n_stages,
        "features_per_stage": list(plan.features),
        "conv_op": nn.Conv3d if spatial_dims == 3 else nn.Conv2d,
        "kernel_sizes": [list(k) for k in plan.kernel_sizes],
        "strides": [list(s) for s in plan.strides],
        "conv_bias": True,
        "norm_op": nn.InstanceNorm3d if spatial_dims == 3 else nn.InstanceNorm2d,
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": nn.LeakyReLU,
        "nonlin_kwargs": {"inplace": True},
    }


class NnUNetNet(nn.Module):
    """A ``dynamic-network-architectures`` U-Net with padding, optional deep-supervision outputs
    and optional sequence layers (``mixers``) after chosen encoder stages.

    Args:
        net: a ``PlainConvUNet`` or ``ResidualEncoderUNet``.
        plan: its topology (for padding and the side outputs' sizes).
        mixers: ``{stage: module}`` applied to that encoder stage's output ``(B, C_s, *spatial_s)``
            (shape kept) before it feeds the next stage and the skip connection.
        side_outputs: return nnU-Net's deep-supervision side logits in training; without, the
            side heads (1x1 convolutions of the decoder stages but the last) are removed.

    Forward: ``x (B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``; in training
    with ``side_outputs``, ``{"logits": ..., "aux": [side_k (B, out_channels, *ceil(spatial /
    stride_k)), ...]}`` for the decoder stages but the coarsest, finest first.
    """

    def __init__(
        self,
        net: nn.Module,
        plan: NetworkPlan,
        mixers: Mapping[int, nn.Module] | None = None,
        side_outputs: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.plan = plan
        self.side_outputs = side_outputs
        if not side_outputs:  # the decoder then only uses its last head
            net.decoder.seg_layers = nn.ModuleList(net.decoder.seg_layers[-1:])
        self.mixers = nn.ModuleDict({str(k): m for k, m in (mixers or {}).items()})
        self.net.apply(self.net.initialize)  # nnU-Net's He init (and zeroed last norm of residual blocks)
        if len(plan.strides[0]) == 3 and not self.mixers:
            # oneDNN's 3D convolution backward on CPU runs ~1.4x faster in channels-last (same
            # float32 accuracy against a float64 reference); sequence mixers expect contiguous input
            self.net.to(memory_format=torch.channels_last_3d)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        encoder = self.net.encoder
        if not self.mixers:
            return encoder(x)
        if getattr(encoder, "stem", None) is not None:
            x = encoder.stem(x)
        skips = []
        for s, stage in enumerate(encoder.stages):
            x = stage(x)
            if str(s) in self.mixers:
                x = self.mixers[str(s)](x)
            skips.append(x)
        return skips

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, Any]:
        """Logits at the input size; with side outputs in training (class docstring)."""
        spatial = tuple(x.shape[2:])
        sides = self.training and self.side_outputs
        self.net.decoder.deep_supervision = sides
        outs = self.net.decoder(self._encode(pad_to_multiple(x, self.plan.total_stride)))
        if not sides:
            return crop_to(outs, spatial)
        aux, stride = [], [1] * len(spatial)
        for k, side in enumerate(outs[1:], start=1):
            stride = [a * b for a, b in zip(stride, self.plan.strides[k])]
            aux.append(crop_to(side, [math.ceil(s / f) for s, f in zip(spatial, stride)]))
        return {"logits": crop_to(outs[0], spatial), "aux": aux}


def _unet(
    kind: str,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    plan: NetworkPlan,
    deep_supervision: bool,
) -> nn.Module:
    """nnU-Net's plain (2 convolutions per stage) or ResEnc (1-3-4-6-6-... residual blocks) U-Net.

    Raises:
        MissingPackageError: ``dynamic-network-architectures`` is not installed (one line saying how).
    """
    try:
        from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
    except ImportError:
        raise MissingPackageError(
            "nnU-Net's U-Nets need the package dynamic-network-architectures: "
            f"{DNA_INSTALL} (--no-deps: its timm pin would pull torchvision)"
        ) from None
    n = plan.n_stages
    kw = {**backbone_kwargs(spatial_dims, plan), "deep_supervision": deep_supervision}
    if kind == "plain":
        return PlainConvUNet(
            in_channels,
            num_classes=out_channels,
            n_conv_per_stage=[2] * n,
            n_conv_per_stage_decoder=[2] * (n - 1),
            **kw,
        )
    return ResidualEncoderUNet(
        in_channels,
        num_classes=out_channels,
        n_blocks_per_stage=list(RESENC_BLOCKS[:n]),
        n_conv_per_stage_decoder=[1] * (n - 1),
        **kw,
    )


def build_nnunet(
    kind: str,
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    plan: NetworkPlan,
    mixers: Mapping[int, nn.Module] | None = None,
    side_outputs: bool = False,
) -> NnUNetNet:
    """nnU-Net's ``kind`` (``"plain"`` or ``"resenc"``) U-Net with ``plan``'s topology in a
    :class:`NnUNetNet` (``mixers`` and ``side_outputs`` as there)."""
    net = _unet(kind, spatial_dims, in_channels, out_channels, plan, deep_supervision=False)
    return NnUNetNet(net, plan, mixers, side_outputs)
