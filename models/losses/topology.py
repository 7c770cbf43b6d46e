"""Topology-aware losses: soft clDice (MONAI) and clDice on the Menten et al. skeleton.

Both follow the registry convention (mode: multiclass-softmax; binary tasks have C=2):
``loss(logits (B, C, *spatial), target (B, 1, *spatial) int64) -> scalar``.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss, SoftDiceclDiceLoss
from monai.networks import one_hot
from torch import nn

from models.layers.skeleton import Skeletonize
from models.registry import register_loss


@register_loss(
    "cldice",
    description="(1-alpha)*Dice + alpha*soft clDice, min/max-pool soft skeleton (Shit et al. 2021; MONAI)",
)
def cldice_loss(
    alpha: float = 0.5, iters: int = 3, smooth: float = 1.0, include_background: bool = False
) -> nn.Module:
    """Soft clDice combined with Dice (Shit et al., CVPR 2021, https://arxiv.org/abs/2003.07311).

    Wraps MONAI ``SoftDiceclDiceLoss`` with ``softmax=True, to_onehot_y=True``: MONAI's soft
    skeleton needs probabilities and one-hot targets, which these flags produce from our logits
    and integer labels. Mode: multiclass-softmax; ``logits (B, C, *spatial)``,
    ``target (B, 1, *spatial)`` int64 -> scalar ``(1 - alpha) * dice + alpha * cldice``.

    Args:
        alpha: weight of the clDice term (1.0 gives pure clDice).
        iters: soft-skeleton iterations (about the largest vessel radius in voxels).
        smooth: additive smoothing of the Dice and clDice ratios.
        include_background: include channel 0.
    """
    return SoftDiceclDiceLoss(
        iter_=iters,
        alpha=alpha,
        smooth_nr=smooth,
        smooth_dr=smooth,
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
    )


def cldice_from_skeletons(
    skel_pred: torch.Tensor,
    skel_true: torch.Tensor,
    prob: torch.Tensor,
    onehot: torch.Tensor,
    smooth: float = 1.0,
) -> torch.Tensor:
    """clDice loss from given skeletons (Shit et al. 2021, Eq. 1-3), per sample.

    Args:
        skel_pred: ``(B, K, *spatial)`` skeleton of the prediction, values in ``[0, 1]``.
        skel_true: ``(B, K, *spatial)`` skeleton of the label.
        prob: ``(B, K, *spatial)`` predicted probabilities.
        onehot: ``(B, K, *spatial)`` one-hot label.
        smooth: additive smoothing of the precision/sensitivity ratios.

    Returns:
        ``(B,)`` values ``1 - 2 Tprec Tsens / (Tprec + Tsens)``, reduced over classes and space.
    """
    axes = list(range(1, prob.dim()))
    tprec = ((skel_pred * onehot).sum(axes) + smooth) / (skel_pred.sum(axes) + smooth)
    tsens = ((skel_true * prob).sum(axes) + smooth) / (skel_true.sum(axes) + smooth)
    return 1.0 - 2.0 * tprec * tsens / (tprec + tsens)


@register_loss(
    "cldice_skel",
    description="(1-alpha)*Dice + alpha*clDice on the topology-preserving skeleton (Menten et al. 2023)",
)
class SkeletonClDiceLoss(nn.Module):
    """``(1 - alpha) * Dice + alpha * clDice`` with the topology-preserving skeleton.

    The skeletons come from :class:`models.layers.skeleton.Skeletonize` (Menten et al., ICCV 2023,
    https://arxiv.org/abs/2309.02527): the label skeleton deterministically and without
    gradient, the prediction skeleton from the softmax probability of each foreground class,
    stochastically binarised while training (straight-through gradients), thresholded at 0.5 in
    eval mode. Mode: multiclass-softmax; ``logits (B, C, *spatial)``,
    ``target (B, 1, *spatial)`` int64 -> scalar.

    Args:
        alpha: weight of the clDice term (1.0 gives pure clDice).
        num_iter: skeleton peeling iterations (>= the largest vessel radius in voxels).
        beta: logistic-noise scale of the stochastic binarisation.
        tau: temperature of the stochastic binarisation.
        smooth: additive smoothing of the Dice and clDice ratios.
        include_background: include channel 0.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        num_iter: int = 5,
        beta: float = 0.33,
        tau: float = 1.0,
        smooth: float = 1.0,
        include_background: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.smooth = smooth
        self.first = 0 if include_background else 1
        self.skel_pred = Skeletonize(num_iter=num_iter, probabilistic=True, beta=beta, tau=tau)
        self.skel_true = Skeletonize(num_iter=num_iter, probabilistic=False)
        self.dice = DiceLoss(
            include_background=include_background,
            to_onehot_y=True,
            softmax=True,
            smooth_nr=smooth,
            smooth_dr=smooth,
        )

    def _skeleton(self, x: torch.Tensor, module: Skeletonize) -> torch.Tensor:
        """Skeleton of each channel of ``x (B, K, *spatial)``, same shape."""
        b, k = x.shape[:2]
        return module(x.reshape(b * k, 1, *x.shape[2:])).reshape(x.shape)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 -> scalar."""
        prob = torch.softmax(logits, dim=1)[:, self.first :]
        onehot = one_hot(target, num_classes=logits.shape[1], dtype=prob.dtype)[:, self.first :]
        self.skel_pred.probabilistic = self.training
        skel_pred = self._skeleton(prob, self.skel_pred)
        with torch.no_grad():
            skel_true = self._skeleton(onehot, self.skel_true)
        cl = cldice_from_skeletons(skel_pred, skel_true, prob, onehot, self.smooth).mean()
        if self.alpha == 1.0:
            return cl
        return (1.0 - self.alpha) * self.dice(logits, target) + self.alpha * cl
