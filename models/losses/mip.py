"""Maximum-intensity-projection (MIP) loss of SPOCKMIP, for 3D vessel segmentation.

Reference: Radhakrishna et al., "SPOCKMIP: Segmentation of Vessels in MRAs with Enhanced
Continuity using Maximum Intensity Projection as Loss", https://arxiv.org/abs/2407.08655.
The term compares the MIP of the predicted foreground probabilities with the MIP of the label,
so vessels broken in 3D but continuous in projection are still penalised. It is only the
projection term: add it to a volume loss with a composite name, e.g. ``"dice_ce+0.5*mip"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks import one_hot
from torch import nn

from models.registry import register_loss

_MODES = ("dice", "bce", "dice_bce")


def mip_loss(
    prob: torch.Tensor,
    onehot: torch.Tensor,
    axes: tuple[int, ...],
    mode: str = "dice",
    smooth: float = 1e-5,
) -> torch.Tensor:
    """Loss between maximum-intensity projections of prediction and label.

    Args:
        prob: ``(B, K, H, W, D)`` predicted probabilities in ``[0, 1]``.
        onehot: ``(B, K, H, W, D)`` binary label.
        axes: spatial axes to project along (0, 1, 2 = H, W, D); the losses are averaged.
        mode: ``"dice"`` (soft Dice per sample and class), ``"bce"`` or ``"dice_bce"`` (sum).
        smooth: Dice smoothing.

    Returns:
        Scalar.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    total = prob.new_zeros(())
    for ax in axes:
        p = prob.amax(dim=2 + ax)
        t = onehot.amax(dim=2 + ax)
        if mode in ("dice", "dice_bce"):
            red = list(range(2, p.dim()))
            inter = (p * t).sum(red)
            dice = (2.0 * inter + smooth) / (p.sum(red) + t.sum(red) + smooth)
            total = total + (1.0 - dice).mean()
        if mode in ("bce", "dice_bce"):
            total = total + F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), t)
    return total / len(axes)


@register_loss(
    "mip",
    description="SPOCKMIP max-intensity-projection Dice/BCE along z (or all axes); add to a volume loss",
    dims=(3,),
)
class MIPLoss(nn.Module):
    """SPOCKMIP maximum-intensity-projection loss (3D only).

    Mode: multiclass-softmax (each foreground class is projected on its own); ``logits
    (B, C, H, W, D)``, ``target (B, 1, H, W, D)`` int64 -> scalar.

    Args:
        axis: projection axis for the single-axis variant (0, 1, 2 = H, W, D; default the last,
            MONAI's depth / z axis).
        multi_axis: project along all three axes and average (SPOCKMIP's multi-axis variant).
        mode: ``"dice"``, ``"bce"`` or ``"dice_bce"`` on the projections.
        include_background: include channel 0.
    """

    def __init__(
        self,
        axis: int = 2,
        multi_axis: bool = False,
        mode: str = "dice",
        include_background: bool = False,
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.axes = (0, 1, 2) if multi_axis else (axis % 3,)
        self.mode = mode
        self.first = 0 if include_background else 1

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, H, W, D)``, ``target (B, 1, H, W, D)`` int64 -> scalar."""
        if logits.dim() != 5:
            raise ValueError(f"mip loss is 3D only, got logits of shape {tuple(logits.shape)}")
        prob = torch.softmax(logits, dim=1)[:, self.first :]
        onehot = one_hot(target, num_classes=logits.shape[1], dtype=prob.dtype)[:, self.first :]
        return mip_loss(prob, onehot, self.axes, self.mode)
