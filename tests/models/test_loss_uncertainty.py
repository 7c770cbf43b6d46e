"""UU-Mamba's uncertainty-weighted loss: the weighting formula and its gradients checked by hand.

The Dice and CE terms are recomputed here independently (``torch.nn.functional.cross_entropy`` and
the soft-Dice formula written out), so the check covers the weighting, not segbench's terms.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import models.losses.uncertainty  # noqa: F401  (registers uncertainty_weighted)
from models import create_loss


def _case() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    target = torch.randint(0, 2, (2, 1, 6, 6))
    target[0, 0, 0, 0], target[1, 0, 0, 0] = 1, 1
    logits = torch.randn(2, 2, 6, 6)
    return logits, target


def _hand_terms(logits: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Soft Dice over the foreground class (per sample, then mean; smoothing 1e-5) and mean CE."""
    p1 = logits.softmax(1)[:, 1]
    g = (target[:, 0] == 1).float()
    inter = (p1 * g).sum((1, 2))
    dice = 1 - (2 * inter + 1e-5) / (p1.sum((1, 2)) + g.sum((1, 2)) + 1e-5)
    ce = F.cross_entropy(logits, target[:, 0])
    return dice.mean().item(), ce.item()


def test_registered_with_the_papers_terms() -> None:
    loss = create_loss("uncertainty_weighted")
    assert loss.names == ["dice", "ce", "focal"]  # region-, distribution-, pixel-based
    assert torch.equal(loss.uncertainty.detach(), torch.ones(3))  # sigma_i = 1 at the start


def test_uu_mamba_formula_by_hand() -> None:
    logits, target = _case()
    loss = create_loss("uncertainty_weighted", terms=["dice", "ce"])
    sigma = (0.5, 2.0)
    with torch.no_grad():
        loss.uncertainty.copy_(torch.tensor(sigma))
    dice, ce = _hand_terms(logits, target)
    expected = sum(0.5 / s**2 * term + math.log(1 + s**2) for s, term in zip(sigma, (dice, ce), strict=True))
    assert loss(logits, target).item() == pytest.approx(expected, rel=1e-5)
    assert loss.weights() == pytest.approx({"dice": 2.0, "ce": 0.125})


def test_kendall_formula_by_hand() -> None:
    logits, target = _case()
    loss = create_loss("uncertainty_weighted", terms=["dice", "ce"], form="kendall")
    assert torch.equal(loss.uncertainty.detach(), torch.zeros(2))  # log-variances start at 0
    log_var = (0.3, -0.7)
    with torch.no_grad():
        loss.uncertainty.copy_(torch.tensor(log_var))
    dice, ce = _hand_terms(logits, target)
    expected = sum(0.5 * math.exp(-s) * t + 0.5 * s for s, t in zip(log_var, (dice, ce), strict=True))
    assert loss(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_gradients_reach_logits_and_weights_with_the_hand_derivative() -> None:
    logits, target = _case()
    logits.requires_grad_(True)
    loss = create_loss("uncertainty_weighted", terms=["dice", "ce"])
    sigma = (0.5, 2.0)
    with torch.no_grad():
        loss.uncertainty.copy_(torch.tensor(sigma))
    loss(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    dice, ce = _hand_terms(logits.detach(), target)
    # d/dsigma [L / (2 sigma^2) + log(1 + sigma^2)] = -L / sigma^3 + 2 sigma / (1 + sigma^2)
    expected = [-t / s**3 + 2 * s / (1 + s**2) for s, t in zip(sigma, (dice, ce), strict=True)]
    assert loss.uncertainty.grad.tolist() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("form", ["uu_mamba", "kendall"])
def test_finite_and_perfect_below_wrong(form: str) -> None:
    _, target = _case()
    onehot = F.one_hot(target[:, 0], 2).permute(0, 3, 1, 2).float()
    loss = create_loss("uncertainty_weighted", form=form)
    perfect, wrong = loss(10 * onehot, target), loss(-10 * onehot, target)
    assert torch.isfinite(perfect) and torch.isfinite(wrong)
    assert perfect < wrong


def test_term_options_reach_their_term_and_bad_options_raise() -> None:
    logits, target = _case()
    plain = create_loss("uncertainty_weighted", terms=["ce"])
    smoothed = create_loss("uncertainty_weighted", terms=["ce"], ce={"label_smoothing": 0.2})
    expected = 0.5 * F.cross_entropy(logits, target[:, 0], label_smoothing=0.2).item() + math.log(2)
    assert smoothed(logits, target).item() == pytest.approx(expected, rel=1e-5)
    assert plain(logits, target).item() != pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="do not name a term"):
        create_loss("uncertainty_weighted", terms=["ce"], dice={})
    with pytest.raises(ValueError, match="form"):
        create_loss("uncertainty_weighted", form="softmax")
    with pytest.raises(ValueError, match="distinct"):
        create_loss("uncertainty_weighted", terms=["ce", "ce"])
    with pytest.raises(KeyError, match="unknown loss"):
        create_loss("uncertainty_weighted", terms=["nope"])
