"""PULASki's statistical-distance losses between predicted and rater segmentation distributions.

Chatterjee et al. 2023, "PULASki: Learning inter-rater variability using statistical distances
to improve probabilistic segmentation" (https://arxiv.org/abs/2312.15686): a
Probabilistic U-Net draws ``S`` segmentations for an image; the ``R`` raters' masks of that image
are ``R`` samples of the label distribution. Each segmentation is one point in
``R^((C-1) * N)`` (foreground probabilities of the ``N`` voxels; a rater's one-hot mask), and the
loss is a statistical distance between the two point clouds, per image, averaged over the batch.
Distances come from GeomLoss (``SamplesLoss``, the library PULASki uses):

- ``pulaski_hausdorff``: PULASki's "Hausdorff" mode, ``SamplesLoss("hausdorff",
  kernel=energy_kernel)``. GeomLoss evaluates that as the kernel norm with the energy kernel
  ``k(x, y) = -||x - y||`` (the same routine as its ``"energy"`` loss, used here), i.e. half the
  energy distance: ``E||X - Y|| - E||X - X'|| / 2 - E||Y - Y'|| / 2``.
- ``pulaski_sinkhorn``: the de-biased Sinkhorn divergence with cost ``||x - y||^2 / 2`` and
  ``blur=0.05`` (GeomLoss defaults, PULASki's "Sinkhorn" mode).

Both are registered with ``targets="raters"``: ``loss(logits, raters)`` with ``logits`` either
``(B, C, *spatial)`` (one sample per image) or ``(B, S, C, *spatial)`` (``S`` samples, what a
Probabilistic U-Net returns as ``"samples"`` in training) and ``raters (B, R, *spatial)`` int64.
With one sample the repulsive ``E||X - X'||`` term is 0 and the loss pulls the prediction to the
raters' median; PULASki draws ``S = R`` samples. Values are sums over voxels (not means), as in
PULASki, so they grow with the patch size.

``focal_tversky`` is the Prob U-Net baseline loss of the paper (single label; Abraham & Khan 2019,
https://arxiv.org/abs/1810.07842, with PULASki's ``alpha=0.7`` on false negatives and exponent 0.75).
"""

from __future__ import annotations

import torch
from geomloss import SamplesLoss
from monai.losses import TverskyLoss
from monai.networks import one_hot
from torch import nn

from models.registry import register_loss


class RaterShapeError(ValueError):
    """Logits/samples and rater labels do not fit together."""


def prediction_points(logits: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Foreground probabilities of each predicted sample as one point.

    Args:
        logits: ``(B, C, *spatial)`` or ``(B, S, C, *spatial)`` raw scores.
        spatial_dims: number of spatial axes.

    Returns:
        ``(B, S, (C - 1) * N)`` softmax probabilities of the classes ``1..C-1`` (``S = 1`` for
        ``(B, C, *spatial)`` logits).
    """
    if logits.dim() == spatial_dims + 2:
        logits = logits[:, None]
    if logits.dim() != spatial_dims + 3:
        raise RaterShapeError(
            f"logits must be (B, C, *spatial) or (B, S, C, *spatial) with {spatial_dims} spatial axes, "
            f"got {tuple(logits.shape)}"
        )
    prob = logits.float().softmax(dim=2)[:, :, 1:]
    return prob.flatten(2)


def rater_points(raters: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot foreground masks of each rater as one point.

    Args:
        raters: ``(B, R, *spatial)`` int64 labels in ``[0, num_classes)``.
        num_classes: ``C``.

    Returns:
        ``(B, R, (C - 1) * N)`` float one-hot of the classes ``1..C-1``.
    """
    b, r = raters.shape[:2]
    oh = one_hot(raters.reshape(b * r, 1, *raters.shape[2:]).long(), num_classes=num_classes, dim=1)
    return oh[:, 1:].reshape(b, r, -1).float()


class RaterDistributionLoss(nn.Module):
    """A GeomLoss distance between predicted and rater segmentation point clouds (module docstring).

    Args:
        loss: GeomLoss ``SamplesLoss`` name (``"hausdorff"``/``"energy"``/``"sinkhorn"``...).
        **options: further ``SamplesLoss`` arguments (``p``, ``blur``, ``scaling``, ``debias``).
    """

    def __init__(self, loss: str, **options: object) -> None:
        super().__init__()
        self.distance = SamplesLoss(loss=loss, backend="tensorized", **options)

    def forward(self, logits: torch.Tensor, raters: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *sp)`` or ``(B, S, C, *sp)``, ``raters (B, R, *sp)`` int64 -> scalar.

        Raises:
            RaterShapeError: for batch or spatial shapes that differ.
        """
        spatial = raters.shape[2:]
        if logits.shape[0] != raters.shape[0] or logits.shape[-len(spatial) :] != spatial:
            raise RaterShapeError(
                f"logits {tuple(logits.shape)} and raters {tuple(raters.shape)} differ in batch or spatial"
            )
        x = prediction_points(logits, len(spatial))
        num_classes = x.shape[-1] // spatial.numel() + 1
        y = rater_points(raters, num_classes).to(x)
        return self.distance(x, y).mean()


@register_loss(
    "pulaski_hausdorff",
    targets="raters",
    description="PULASki: GeomLoss 'hausdorff' with energy kernel (half energy distance) to the raters",
)
def pulaski_hausdorff_loss() -> nn.Module:
    """PULASki's Hausdorff-mode loss; see the module docstring. Mode: multiclass-softmax, multi-rater."""
    return RaterDistributionLoss("energy")  # = SamplesLoss("hausdorff", kernel=energy_kernel)


@register_loss(
    "pulaski_sinkhorn",
    targets="raters",
    description="PULASki: de-biased Sinkhorn divergence (GeomLoss, p=2, blur=0.05) to the raters",
)
def pulaski_sinkhorn_loss(blur: float = 0.05, scaling: float = 0.5) -> nn.Module:
    """PULASki's Sinkhorn-mode loss; see the module docstring. Mode: multiclass-softmax, multi-rater.

    Args:
        blur: entropic blur ``eps^(1/p)`` (GeomLoss default 0.05).
        scaling: epsilon-scaling ratio of the annealing (GeomLoss default 0.5; closer to 1 is more
            accurate and slower).
    """
    return RaterDistributionLoss("sinkhorn", p=2, blur=blur, scaling=scaling, debias=True)


class FocalTverskyLoss(nn.Module):
    """Focal Tversky loss ``(1 - TI_c)^gamma`` per foreground class, over the whole batch, averaged.

    ``TI = (TP + s) / (TP + alpha FN + (1 - alpha) FP + s)`` on softmax probabilities (MONAI
    ``TverskyLoss`` with ``batch=True``). Mode: multiclass-softmax; ``logits (B, C, *spatial)``,
    ``target (B, 1, *spatial)`` int64 -> scalar.

    Args:
        alpha: weight of false negatives (PULASki: 0.7; false positives get ``1 - alpha``).
        gamma: exponent (PULASki: 0.75, i.e. ``1 / (4/3)`` of Abraham & Khan).
        smooth: additive smoothing of the Tversky index.
    """

    def __init__(self, alpha: float = 0.7, gamma: float = 0.75, smooth: float = 1.0) -> None:
        super().__init__()
        self.gamma = gamma
        self.tversky = TverskyLoss(
            include_background=False,
            to_onehot_y=True,
            softmax=True,
            alpha=1.0 - alpha,  # MONAI's alpha weighs false positives
            beta=alpha,
            smooth_nr=smooth,
            smooth_dr=smooth,
            batch=True,
            reduction="none",
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` -> scalar."""
        per_class = self.tversky(logits, target).clamp_min(0)  # 1 - TI_c, (C - 1,) values
        return per_class.pow(self.gamma).mean()


@register_loss(
    "focal_tversky",
    description="focal Tversky loss, PULASki's Prob U-Net baseline (Abraham & Khan 2019; MONAI Tversky)",
)
def focal_tversky_loss(alpha: float = 0.7, gamma: float = 0.75, smooth: float = 1.0) -> nn.Module:
    """Focal Tversky; see :class:`FocalTverskyLoss`."""
    return FocalTverskyLoss(alpha=alpha, gamma=gamma, smooth=smooth)
