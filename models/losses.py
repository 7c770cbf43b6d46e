"""Loss registry and the standard region/pixel losses.

Calling convention for every registered loss (mode: multiclass-softmax; binary tasks have C=2):

- ``logits``: ``(B, C, *spatial)`` raw network outputs, ``C >= 2`` (channel 0 = background);
- ``target``: ``(B, 1, *spatial)`` integer class labels in ``[0, C)``.

Each returns a scalar tensor. Composite losses are written ``"dice_ce+0.5*mip"``: terms joined
by ``+``, each optionally prefixed with ``weight*``; keyword arguments for a term go under its
name (``create_loss("dice+cldice", cldice={"alpha": 0.3})``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from monai.losses import DiceCELoss, DiceLoss, FocalLoss, TverskyLoss
from torch import nn

from bench.registry import Entry, Registry

LOSSES: Registry[nn.Module] = Registry("loss")

_TERM = re.compile(r"^\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*\*\s*)?(?P<name>[a-z0-9_]+)\s*$")


def register_loss(
    name: str | None = None, *, description: str = "", dims: tuple[int, ...] = (2, 3)
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a loss factory returning an ``nn.Module`` with ``forward(logits, target)``."""
    return LOSSES.register(name, description=description, dims=tuple(dims))


class WeightedSumLoss(nn.Module):
    """Weighted sum of losses sharing the ``(logits, target)`` convention."""

    def __init__(self, terms: list[tuple[float, str, nn.Module]]) -> None:
        super().__init__()
        self.weights = [w for w, _, _ in terms]
        self.names = [n for _, n, _ in terms]
        self.terms = nn.ModuleList([m for _, _, m in terms])

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        for w, term in zip(self.weights, self.terms, strict=True):
            total = total + w * term(logits, target)
        return total


def parse_loss_name(name: str) -> list[tuple[float, str]]:
    """Split ``"dice_ce+0.5*mip"`` into ``[(1.0, "dice_ce"), (0.5, "mip")]``.

    Raises:
        ValueError: for a malformed term; KeyError for an unknown loss name.
    """
    terms = []
    for part in name.split("+"):
        m = _TERM.match(part)
        if m is None:
            raise ValueError(f"cannot parse loss term {part!r} in {name!r} (expected [weight*]name)")
        LOSSES.get(m["name"])  # raises with the list of known names
        terms.append((float(m["w"]) if m["w"] else 1.0, m["name"]))
    return terms


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss, or a weighted sum for a ``+`` composite name.

    For a single loss, ``kwargs`` go to its factory. For a composite, ``kwargs[term_name]`` (a
    dict) goes to that term's factory.
    """
    terms = parse_loss_name(name)
    if len(terms) == 1 and terms[0][0] == 1.0:
        return LOSSES.build(terms[0][1], **kwargs)
    unknown = set(kwargs) - {n for _, n in terms}
    if unknown:
        raise ValueError(
            f"loss {name!r}: options {sorted(unknown)} do not name a term; "
            "give options per term, e.g. {'cldice': {'alpha': 0.3}}"
        )
    return WeightedSumLoss([(w, n, LOSSES.build(n, **kwargs.get(n, {}))) for w, n in terms])


def list_losses() -> list[str]:
    """Registered loss names."""
    return LOSSES.names()


def loss_entry(name: str) -> Entry[nn.Module]:
    """Registry entry of a single (non-composite) loss."""
    return LOSSES.get(name)


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


# Modules below register more losses on import; they need ``register_loss`` defined above.
from models import loss_calibration, loss_mip, loss_topology  # noqa: E402, F401
