"""PULASki's statistical-distance losses checked against SciPy and POT on tiny cases.

A 1-voxel, 2-class case makes each segmentation one number (the foreground probability, or a
rater's 0/1 label), so SciPy's 1D distances apply; larger cases use ``scipy.spatial.distance.cdist``
(energy distance by hand) and POT's exact optimal transport (``ot.emd2``).
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from geomloss import SamplesLoss
from geomloss._legacy.kernel_samples import energy_kernel
from scipy.spatial.distance import cdist
from scipy.stats import energy_distance

import models.losses.pulaski  # noqa: F401  (registers the losses)
from models import create_loss, loss_entry
from models.losses.pulaski import RaterShapeError, prediction_points, rater_points


def _logits_for(prob: np.ndarray) -> torch.Tensor:
    """2-class logits whose softmax foreground probability is ``prob`` (any shape)."""
    p = torch.as_tensor(prob, dtype=torch.float64)
    return torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=-3)


def test_registered_as_multi_rater_losses() -> None:
    for name in ("pulaski_hausdorff", "pulaski_sinkhorn"):
        assert loss_entry(name).meta["targets"] == "raters"
    assert loss_entry("focal_tversky").meta["targets"] == "label"


def test_hausdorff_is_half_squared_scipy_energy_distance_in_1d() -> None:
    preds = np.array([0.2, 0.7, 0.9])  # S = 3 samples of one voxel
    raters = np.array([0, 1, 1, 1])  # R = 4 raters
    logits = _logits_for(preds.reshape(1, 3, 1, 1))  # (B=1, S=3, C=2, 1, 1)
    target = torch.as_tensor(raters).reshape(1, 4, 1, 1)
    value = create_loss("pulaski_hausdorff")(logits, target).item()
    assert value == pytest.approx(0.5 * energy_distance(preds, raters) ** 2, abs=1e-3)


def test_hausdorff_matches_energy_distance_by_hand_and_pulaskis_geomloss_call() -> None:
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.05, 0.95, size=(2, 3, 4, 5))  # B=2, S=3, 4x5 image
    raters = rng.integers(0, 2, size=(2, 2, 4, 5))  # R=2
    logits, target = _logits_for(prob), torch.as_tensor(raters)
    value = create_loss("pulaski_hausdorff")(logits, target).item()
    per_case = []
    for b in range(2):
        x, y = prob[b].reshape(3, -1), raters[b].reshape(2, -1).astype(float)
        e = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
        per_case.append(e / 2)
    assert value == pytest.approx(np.mean(per_case), abs=1e-3)
    # the exact GeomLoss call of PULASki's code: "hausdorff" with the energy kernel
    x = prediction_points(logits, 2)
    y = rater_points(target, 2).to(x)
    pulaski = SamplesLoss(loss="hausdorff", kernel=energy_kernel)(x, y).mean().item()
    assert value == pytest.approx(pulaski, abs=1e-9)


def test_sinkhorn_approaches_exact_optimal_transport_from_pot() -> None:
    rng = np.random.default_rng(1)
    prob = rng.uniform(0.05, 0.95, size=(1, 4, 4, 5))
    raters = rng.integers(0, 2, size=(1, 3, 4, 5))
    logits, target = _logits_for(prob), torch.as_tensor(raters)
    x, y = prob[0].reshape(4, -1), raters[0].reshape(3, -1).astype(float)
    exact = ot.emd2(np.full(4, 1 / 4), np.full(3, 1 / 3), cdist(x, y, "sqeuclidean") / 2)
    default = create_loss("pulaski_sinkhorn")(logits, target).item()
    fine = create_loss("pulaski_sinkhorn", scaling=0.95)(logits, target).item()
    assert default == pytest.approx(exact, rel=0.05)  # GeomLoss defaults: blur 0.05, scaling 0.5
    assert fine == pytest.approx(exact, rel=0.01)


def test_sinkhorn_in_1d_is_half_squared_w2_by_sorting() -> None:
    preds, raters = np.array([0.2, 0.9]), np.array([0, 1])
    logits = _logits_for(preds.reshape(1, 2, 1, 1))
    target = torch.as_tensor(raters).reshape(1, 2, 1, 1)
    value = create_loss("pulaski_sinkhorn", blur=0.001, scaling=0.95)(logits, target).item()
    w2_sq = np.mean((np.sort(preds) - np.sort(raters)) ** 2)
    assert value == pytest.approx(w2_sq / 2, rel=1e-3)


@pytest.mark.parametrize("name", ["pulaski_hausdorff", "pulaski_sinkhorn"])
def test_finite_perfect_below_wrong_and_gradients_flow(name: str) -> None:
    torch.manual_seed(0)
    raters = torch.randint(0, 2, (2, 3, 8, 8))
    onehot = torch.nn.functional.one_hot(raters, 2).permute(0, 1, 4, 2, 3).float()  # (B, R, C, H, W)
    loss = create_loss(name)
    perfect, wrong = loss(12 * (2 * onehot - 1), raters), loss(-12 * (2 * onehot - 1), raters)
    assert torch.isfinite(perfect) and torch.isfinite(wrong) and perfect < wrong
    assert perfect.item() == pytest.approx(0.0, abs=1e-4)  # a divergence: 0 for equal distributions
    for shape in ((2, 3, 2, 8, 8), (2, 2, 8, 8)):  # S samples, or one sample per image
        logits = torch.randn(shape, requires_grad=True)
        value = loss(logits, raters)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_multiclass_points_and_shape_errors() -> None:
    logits = torch.randn(2, 4, 3, 5, 6)  # B=2, S=4, C=3
    assert prediction_points(logits, 2).shape == (2, 4, 2 * 30)
    raters = torch.randint(0, 3, (2, 2, 5, 6))
    assert rater_points(raters, 3).shape == (2, 2, 60)
    assert torch.equal(rater_points(raters, 3)[0, 0, :30].reshape(5, 6), (raters[0, 0] == 1).float())
    assert torch.isfinite(create_loss("pulaski_hausdorff")(logits, raters))
    with pytest.raises(RaterShapeError, match="differ"):
        create_loss("pulaski_hausdorff")(logits, raters[:1])
    with pytest.raises(RaterShapeError, match="differ"):
        create_loss("pulaski_hausdorff")(torch.randn(2, 3, 5, 7), raters)


def test_focal_tversky_by_hand() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 6, 6)
    target = torch.randint(0, 2, (2, 1, 6, 6))
    p, g = logits.softmax(1)[:, 1].flatten(), (target[:, 0] == 1).float().flatten()
    tp, fn, fp = (p * g).sum(), ((1 - p) * g).sum(), (p * (1 - g)).sum()
    ti = (tp + 1) / (tp + 0.7 * fn + 0.3 * fp + 1)  # PULASki: alpha = 0.7 on false negatives
    expected = (1 - ti) ** 0.75
    assert create_loss("focal_tversky")(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)
    onehot = torch.nn.functional.one_hot(target[:, 0], 2).permute(0, 3, 1, 2).float()
    loss = create_loss("focal_tversky")
    assert loss(10 * onehot, target) < loss(-10 * onehot, target)
