"""Loss registry and the standard region/pixel losses.

Calling convention for every registered loss (multiclass mode, softmax over channels):

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
from monai.losses import DiceCELoss, DiceLoss
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


@register_loss("dice", description="soft Dice on softmax probabilities (MONAI DiceLoss)")
def dice_loss(include_background: bool = False, smooth: float = 1e-5) -> nn.Module:
    """Soft Dice (Milletari et al. 2016) over foreground classes, batch-averaged."""
    return DiceLoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        smooth_nr=smooth,
        smooth_dr=smooth,
    )


@register_loss("dice_ce", description="soft Dice + cross-entropy (MONAI DiceCELoss)")
def dice_ce_loss(
    include_background: bool = False, lambda_dice: float = 1.0, lambda_ce: float = 1.0
) -> nn.Module:
    """Dice + CE, the nnU-Net default loss."""
    return DiceCELoss(
        include_background=include_background,
        to_onehot_y=True,
        softmax=True,
        lambda_dice=lambda_dice,
        lambda_ce=lambda_ce,
    )
