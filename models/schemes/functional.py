"""The maths of the training schemes as pure functions on tensors.

Shapes: ``C`` classes, ``*spatial`` two or three axes (2D / 3D). Probabilities are softmax maps
``(B, C, *spatial)`` in ``[0, 1]`` summing to 1 over ``C``. Displacement fields are in the
normalised coordinates of :func:`torch.nn.functional.grid_sample` (``align_corners=True``: -1 and
1 are the centres of the first and last voxel) with the last axis ordered as ``grid_sample``
wants it, ``(x, y[, z])`` = (last spatial axis, ..., first spatial axis).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
"""The label value of an unlabelled (unscribbled) voxel."""


def output_logits(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """The logits ``(B, C, *spatial)`` of a network output (a tensor or a dict with ``"logits"``)."""
    return out["logits"] if isinstance(out, dict) else out


# ---- consistency, ramp-up, EMA -----------------------------------------------------------------


def softmax_mse(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Consistency: mean squared error between two probability maps, averaged over every element.

    Args:
        probs, target: ``(B, C, *spatial)`` probabilities (the student's and the teacher's).

    Returns:
        scalar ``mean((probs - target)^2)`` over ``B * C * prod(spatial)`` elements (Tarvainen &
        Valpola 2017's ``softmax_mse_loss`` up to its constant factor).
    """
    return (probs - target).pow(2).mean()


def sigmoid_rampup(step: float, length: float) -> float:
    """Laine & Aila's ramp-up ``exp(-5 (1 - t)^2)``, ``t = clip(step / length, 0, 1)``.

    1 when ``length <= 0`` (no ramp-up).
    """
    if length <= 0:
        return 1.0
    t = min(max(float(step) / float(length), 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def ema_decay(step: int, decay: float) -> float:
    """Mean teacher's warm start: ``min(1 - 1 / (step + 1), decay)`` after ``step`` optimiser steps."""
    return min(1.0 - 1.0 / (step + 1), decay)


def ema(teacher: torch.Tensor, student: torch.Tensor, alpha: float) -> torch.Tensor:
    """Exponential moving average ``alpha * teacher + (1 - alpha) * student`` (any equal shapes)."""
    return alpha * teacher + (1.0 - alpha) * student


@torch.no_grad()
def ema_update_(teacher: torch.nn.Module, student: torch.nn.Module, alpha: float) -> None:
    """In place: every teacher parameter becomes :func:`ema` of itself and the student's; buffers
    (normalisation statistics) are copied from the student."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


# ---- deformation -------------------------------------------------------------------------------


def identity_grid(spatial: Sequence[int], *, device: Any = None, dtype: Any = None) -> torch.Tensor:
    """The identity sampling grid ``(1, *spatial, dims)`` of ``grid_sample`` (``align_corners=True``)."""
    axes = [torch.linspace(-1.0, 1.0, int(n), device=device, dtype=dtype) for n in spatial]
    mesh = torch.meshgrid(*axes, indexing="ij")  # each (*spatial), ordered as the tensor's axes
    return torch.stack(mesh[::-1], dim=-1)[None]  # grid_sample wants (x, y[, z]) = reversed axes


def warp(x: torch.Tensor, displacement: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
    """Resample ``x`` at ``identity + displacement``: ``out(p) = x(p + displacement(p))``.

    Args:
        x: ``(B, C, *spatial)`` float (an image, logits or probabilities; labels as float with
            ``mode="nearest"``).
        displacement: ``(B or 1, *spatial, dims)`` in normalised coordinates (module docstring).
        mode: ``bilinear`` (trilinear in 3D) or ``nearest``. Outside the volume the border value
            is repeated (``padding_mode="border"``), so a point-wise map commutes with ``warp``.

    Returns:
        ``(B, C, *spatial)``.
    """
    grid = identity_grid(x.shape[2:], device=x.device, dtype=x.dtype) + displacement.to(x.dtype)
    grid = grid.expand(x.shape[0], *grid.shape[1:])
    return F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=True)


def voxel_shift(shift: Sequence[float], spatial: Sequence[int]) -> torch.Tensor:
    """A constant displacement ``(1, *spatial, dims)`` moving by ``shift`` voxels per axis (tensor order)."""
    norm = [2.0 * float(s) / (int(n) - 1) for s, n in zip(shift, spatial, strict=True)]
    field = torch.tensor(norm[::-1], dtype=torch.float32)
    return field.expand(1, *[int(n) for n in spatial], len(norm)).clone()


def random_displacement(
    batch: int,
    spatial: Sequence[int],
    *,
    magnitude: float,
    control_points: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A smooth random displacement field: uniform control-point displacements, cubic-interpolated.

    Each of ``control_points`` points per axis gets a displacement drawn from
    ``U(-magnitude, magnitude)`` (normalised units: 1 = half the patch) per axis; the outer ring
    is held at zero (the border stays put), and the coarse field is upsampled to ``spatial``
    (bicubic in 2D, trilinear in 3D), as the B-spline fields of DS6's elastic deformation.

    Returns:
        ``(batch, *spatial, dims)`` float32 on CPU (move it with ``.to``).
    """
    dims = len(spatial)
    coarse = (torch.rand(batch, dims, *([control_points] * dims), generator=generator) * 2 - 1) * magnitude
    inner = [slice(None), slice(None)] + [slice(1, -1)] * dims
    locked = torch.zeros_like(coarse)
    locked[tuple(inner)] = coarse[tuple(inner)]
    mode = "bicubic" if dims == 2 else "trilinear"
    field = F.interpolate(locked, size=tuple(int(n) for n in spatial), mode=mode, align_corners=True)
    return field.movedim(1, -1).contiguous()


def deformation_consistency(
    logits: torch.Tensor, logits_deformed: torch.Tensor, displacement: torch.Tensor
) -> torch.Tensor:
    """DS6's consistency: the prediction of the deformed view against the deformed prediction.

    Args:
        logits: ``(B, C, *spatial)`` the network's logits of the original view ``x``.
        logits_deformed: ``(B, C, *spatial)`` its logits of ``warp(x, displacement)``.
        displacement: ``(B or 1, *spatial, dims)`` the known field.

    Returns:
        scalar :func:`softmax_mse` of ``softmax(logits_deformed)`` and ``softmax(warp(logits))``
        (the logits are warped, as DS6 warps the first branch's output); zero for a network that
        commutes with the deformation (a 1x1 convolution).
    """
    target = torch.softmax(warp(logits, displacement), dim=1)
    return softmax_mse(torch.softmax(logits_deformed, dim=1), target)


# ---- pseudo-labels, label noise, adversarial ---------------------------------------------------


def confident_targets(probs: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-labels where the teacher is confident.

    Args:
        probs: ``(B, C, *spatial)`` the teacher's probabilities.
        threshold: ``tau``; a voxel is kept when ``max_c probs >= tau``.

    Returns:
        ``target (B, *spatial)`` int64 argmax, ``mask (B, *spatial)`` bool (kept voxels).
    """
    conf, target = probs.max(dim=1)
    return target, conf >= threshold


def forward_noise_correction(probs: torch.Tensor, noise_rate: float) -> torch.Tensor:
    """Patrini et al. 2017's forward correction for symmetric label noise.

    ``p_noisy = (1 - eps) p + eps / C`` (a label is replaced by a uniformly drawn class with
    probability ``eps``); ``probs (B, C, *spatial)`` -> same shape.
    """
    return (1.0 - noise_rate) * probs + noise_rate / probs.shape[1]


def masked_nll(log_probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over the voxels of ``mask``; 0 (with a gradient path) when none.

    Args:
        log_probs: ``(B, C, *spatial)`` log-probabilities.
        target: ``(B, *spatial)`` int64 in ``[0, C)`` where ``mask`` holds (anything elsewhere).
        mask: ``(B, *spatial)`` bool.
    """
    safe = torch.where(mask, target, torch.zeros_like(target))
    nll = -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)  # (B, *spatial)
    weight = mask.to(nll.dtype)
    return (nll * weight).sum() / weight.sum().clamp_min(1.0)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Gradient reversal (Ganin & Lempitsky 2015): identity forward, ``-scale * grad`` backward."""
    return _GradReverse.apply(x, scale)


# ---- partial (scribble) supervision --------------------------------------------------------------


def partial_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Cross-entropy over the labelled (scribbled) voxels only.

    Args:
        logits: ``(B, C, *spatial)``.
        target: ``(B, 1, *spatial)`` or ``(B, *spatial)`` int labels in ``[0, C)``, ``ignore_index``
            on unlabelled voxels.

    Returns:
        scalar mean CE over voxels whose label is not ``ignore_index``; ``0 * logits.sum()`` (zero
        with a gradient path, not NaN) when there is none.
    """
    labels = (target[:, 0] if target.dim() == logits.dim() else target).long()
    mask = labels != ignore_index
    return masked_nll(torch.log_softmax(logits, dim=1), labels, mask) + 0.0 * logits.sum()


def masked_entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean softmax entropy ``-sum_c p log p`` over the voxels of ``mask (B, *spatial)``; 0 when none."""
    logp = torch.log_softmax(logits, dim=1)
    ent = -(logp.exp() * logp).sum(1)
    weight = mask.to(ent.dtype)
    return (ent * weight).sum() / weight.sum().clamp_min(1.0)
