"""UU-Mamba's uncertainty-aware loss: registered losses weighted by learned homoscedastic uncertainty.

Tsai et al. 2024, "UU-Mamba: Uncertainty-aware U-Mamba for Cardiac Image Segmentation"
(https://arxiv.org/abs/2405.17496, the uncertainty-aware loss): a region-based (Dice), a
distribution-based (cross-entropy) and a pixel-based (focal) term, each weighted by a learned
uncertainty ``sigma_i``:

    L = sum_i  L_i / (2 sigma_i^2) + log(1 + sigma_i^2)        (form "uu_mamba", sigma_i init 1)

The ``log(1 + sigma^2)`` regulariser (Liebel & Koerner 2018) keeps the sum positive. The form
"kendall" is Kendall et al. (CVPR 2018, https://arxiv.org/abs/1705.07115, Eq. 7) on learned
log-variances ``s_i = log sigma_i^2``: ``L = sum_i 0.5 exp(-s_i) L_i + 0.5 s_i`` (``s_i`` init 0).

The learned values are ``nn.Parameter`` s of the loss module: the optimiser must include
``loss.parameters()`` besides the network's.

Mode: multiclass-softmax. ``loss(logits (B, C, *spatial), target (B, 1, *spatial) int64) -> scalar``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.factory import create_loss
from models.registry import register_loss


@dataclass(frozen=True)
class _Form:
    """One weighting rule: the initial parameter value and ``(term values, params) -> (T,) terms``."""

    init: float
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    weight: Callable[[torch.Tensor], torch.Tensor]  # params -> the factor in front of each L_i


def _uu_mamba(losses: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return 0.5 / sigma.square() * losses + torch.log1p(sigma.square())


def _kendall(losses: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.exp(-log_var) * losses + 0.5 * log_var


_FORMS: dict[str, _Form] = {
    "uu_mamba": _Form(1.0, _uu_mamba, lambda sigma: 0.5 / sigma.square()),
    "kendall": _Form(0.0, _kendall, lambda log_var: 0.5 * torch.exp(-log_var)),
}

# UU-Mamba's terms: region-based, distribution-based and pixel-based.
_PAPER_TERMS = ("dice", "ce", "focal")


class UncertaintyWeightedLoss(nn.Module):
    """Sum of registered losses, each weighted by a learned uncertainty (see the module docstring).

    Args:
        terms: names of registered losses (the ``(logits, target)`` convention), at least one.
        form: ``"uu_mamba"`` (learned ``sigma_i``) or ``"kendall"`` (learned ``log sigma_i^2``).
        term_options: per-term keyword arguments, ``{"focal": {"gamma": 2.0}}``.

    Attributes:
        uncertainty: ``(T,)`` parameter, ``sigma_i`` or ``log sigma_i^2`` depending on ``form``.

    Raises:
        ValueError: for an unknown form, no or repeated terms, a term nesting this loss, or options
            for a name that is not a term.
    """

    def __init__(
        self,
        terms: Sequence[str] = _PAPER_TERMS,
        form: str = "uu_mamba",
        term_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if form not in _FORMS:
            raise ValueError(f"uncertainty_weighted: form {form!r} is not one of {sorted(_FORMS)}")
        terms = [terms] if isinstance(terms, str) else list(terms)
        if not terms or len(set(terms)) != len(terms):
            raise ValueError(f"uncertainty_weighted: terms must be distinct loss names, got {terms}")
        if "uncertainty_weighted" in terms:
            raise ValueError("uncertainty_weighted: a term cannot be uncertainty_weighted itself")
        options = dict(term_options or {})
        unknown = set(options) - set(terms)
        if unknown:
            raise ValueError(f"uncertainty_weighted: options {sorted(unknown)} do not name a term of {terms}")
        self.form = form
        self.names = terms
        self.terms = nn.ModuleList([create_loss(n, **options.get(n, {})) for n in terms])
        self.uncertainty = nn.Parameter(torch.full((len(terms),), _FORMS[form].init))

    def term_values(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unweighted terms ``(T,)`` for ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)``."""
        return torch.stack([t(logits, target).reshape(()) for t in self.terms]).to(self.uncertainty.dtype)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 -> scalar."""
        return _FORMS[self.form].combine(self.term_values(logits, target), self.uncertainty).sum()

    def weights(self) -> dict[str, float]:
        """The current factor in front of each term (``1 / (2 sigma_i^2)``), by term name."""
        w = _FORMS[self.form].weight(self.uncertainty.detach())
        return dict(zip(self.names, w.tolist(), strict=True))


@register_loss(
    "uncertainty_weighted",
    description="Dice + CE + focal weighted by learned uncertainties (UU-Mamba, Tsai et al. 2024)",
)
def uncertainty_weighted_loss(
    terms: Sequence[str] = _PAPER_TERMS, form: str = "uu_mamba", **term_options: dict[str, Any]
) -> nn.Module:
    """UU-Mamba's uncertainty-aware loss; see :class:`UncertaintyWeightedLoss`.

    Options of a term go under its name: ``create_loss("uncertainty_weighted", terms=["dice", "ce"],
    ce={"label_smoothing": 0.1})``.
    """
    return UncertaintyWeightedLoss(terms=terms, form=form, term_options=term_options)
