"""The standard region/pixel losses: Dice, Dice + CE, CE, focal, Dice + focal and Tversky.

Calling convention as every registered loss (:mod:`models.losses`): ``logits (B, C, *spatial)``,
``target (B, 1, *spatial)`` int64 labels in ``[0, C)`` -> scalar. Mode: multiclass-softmax.
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss, DiceLoss, FocalLoss, TverskyLoss
from torch import nn

from models.registry import register_loss


@register_loss(
    "dice", description="soft Dice over foreground classes on softmax probabilities (MONAI DiceLoss)"
)
def dice_loss(include_background: bool = False, smooth: float = 1e-5) -> nn.Module:
    """Soft Dice (Milletari et al. 2016, https://arxiv.org/abs/1606.04797).

    Mode: multiclass-softmax. ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 in
    ``[0, C)`` -> scalar in ``[0, 1]``; per-sample, per-class, then averaged.
    """
    return DiceLoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        smooth_nr=smooth,
        smooth_dr=smooth,
    )


@register_loss("dice_ce", description="soft Dice + cross-entropy, the nnU-Net default (MONAI DiceCELoss)")
def dice_ce_loss(
    include_background: bool = False, lambda_dice: float = 1.0, lambda_ce: float = 1.0
) -> nn.Module:
    """Dice + CE (Isensee et al. 2021, https://doi.org/10.1038/s41592-020-01008-z).

    Mode: multiclass-softmax. ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 ->
    scalar ``lambda_dice * dice + lambda_ce * ce``.
    """
    return DiceCELoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        lambda_dice=lambda_dice,
        lambda_ce=lambda_ce,
    )


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy with the ``(B, 1, *spatial)`` integer target convention.

    Mode: multiclass-softmax. ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 ->
    scalar mean over voxels.

    Args:
        weight: optional per-class weights ``(C,)``.
        label_smoothing: uniform label smoothing in ``[0, 1)``.
    """

    def __init__(self, weight: list[float] | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        self.ce = nn.CrossEntropyLoss(weight=w, label_smoothing=label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` -> scalar."""
        return self.ce(logits, target[:, 0].long())


@register_loss("ce", description="pixel-wise softmax cross-entropy (torch CrossEntropyLoss)")
def ce_loss(weight: list[float] | None = None, label_smoothing: float = 0.0) -> nn.Module:
    """Softmax cross-entropy. Mode: multiclass-softmax; see :class:`CrossEntropyLoss`."""
    return CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


@register_loss("focal", description="softmax focal loss over all classes (Lin et al. 2017; MONAI FocalLoss)")
def focal_loss(gamma: float = 2.0, alpha: list[float] | None = None) -> nn.Module:
    """Focal loss (Lin et al. 2017, https://arxiv.org/abs/1708.02002).

    Mode: multiclass-softmax over all ``C`` channels (MONAI drops channel 0 *before* the softmax
    when ``include_background=False``, which would make a 2-class softmax constant, so the
    background channel is always kept). ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)``
    int64 -> scalar.

    Args:
        gamma: focusing exponent.
        alpha: optional per-class balancing weights ``(C,)``.
    """
    return FocalLoss(include_background=True, to_onehot_y=True, gamma=gamma, alpha=alpha, use_softmax=True)


class DiceFocalLoss(nn.Module):
    """Soft Dice (foreground classes) + softmax focal loss, both from MONAI.

    MONAI's own ``DiceFocalLoss`` uses a *sigmoid* focal term; this keeps both terms softmax.
    Mode: multiclass-softmax. ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 ->
    scalar ``lambda_dice * dice + lambda_focal * focal``.

    Args:
        include_background: include channel 0 in the Dice term.
        gamma: focal exponent.
        lambda_dice: weight of the Dice term.
        lambda_focal: weight of the focal term.
    """

    def __init__(
        self,
        include_background: bool = False,
        gamma: float = 2.0,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
    ) -> None:
        super().__init__()
        self.dice = dice_loss(include_background=include_background)
        self.focal = focal_loss(gamma=gamma)
        self.lambda_dice = lambda_dice
        self.lambda_focal = lambda_focal

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` -> scalar."""
        return self.lambda_dice * self.dice(logits, target) + self.lambda_focal * self.focal(logits, target)


@register_loss("dice_focal", description="soft Dice + softmax focal loss (MONAI DiceLoss + FocalLoss)")
def dice_focal_loss(
    include_background: bool = False,
    gamma: float = 2.0,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
) -> nn.Module:
    """Dice + focal. Mode: multiclass-softmax; see :class:`DiceFocalLoss`."""
    return DiceFocalLoss(include_background, gamma, lambda_dice, lambda_focal)


@register_loss(
    "tversky", description="Tversky loss, FP/FN-weighted Dice (Salehi et al. 2017; MONAI TverskyLoss)"
)
def tversky_loss(include_background: bool = False, alpha: float = 0.3, beta: float = 0.7) -> nn.Module:
    """Tversky loss (Salehi et al. 2017, https://arxiv.org/abs/1706.05721).

    Mode: multiclass-softmax. ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 ->
    scalar in ``[0, 1]``.

    Args:
        include_background: include channel 0.
        alpha: weight of false positives (0.5/0.5 is Dice).
        beta: weight of false negatives.
    """
    return TverskyLoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        alpha=alpha,
        beta=beta,
    )
