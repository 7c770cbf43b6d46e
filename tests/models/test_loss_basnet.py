"""BASNet hybrid loss against skimage / SciPy SSIM and torch BCE; order, gradients, registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

import models.losses.basnet  # noqa: F401  (registers)
from models import create_loss
from models.losses.basnet import basnet_hybrid_loss, ssim_map

R = 5  # radius of the 11-tap window at sigma 1.5


@pytest.mark.parametrize("shape", [(40, 36), (22, 20, 24)])
def test_ssim_map_matches_skimage_inside(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(shape), (rng.random(shape) > 0.6).astype(float)
    _, ref = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True
    )
    ours = ssim_map(torch.tensor(a)[None].float(), torch.tensor(b)[None].float())[0].numpy()
    inner = tuple(slice(R, -R) for _ in shape)  # skimage filters with reflection, ours with zeros
    np.testing.assert_allclose(ours[inner], ref[inner], atol=1e-5)


def _scipy_ssim_mean(p: np.ndarray, g: np.ndarray) -> float:
    """Whole-map SSIM with zero padding ("same" conv), as BASNet's code computes it."""

    def blur(v: np.ndarray) -> np.ndarray:
        return gaussian_filter(v, sigma=1.5, mode="constant", cval=0.0, radius=R)

    mx, my = blur(p), blur(g)
    vx, vy, cxy = blur(p * p) - mx**2, blur(g * g) - my**2, blur(p * g) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def test_hybrid_loss_equals_independent_sum() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 24, 28, dtype=torch.float64)
    target = (torch.rand(2, 1, 24, 28) > 0.7).long()
    p = torch.softmax(logits, 1)[:, 1].float()
    g = target[:, 0].float()
    bce = F.binary_cross_entropy(p, g).item()
    assert bce == pytest.approx(F.cross_entropy(logits, target[:, 0]).item(), rel=1e-5)  # C = 2
    ssim = np.mean([_scipy_ssim_mean(p[i].numpy(), g[i].numpy()) for i in range(2)])
    iou = ((p * g).sum((1, 2)) / (p + g - p * g).sum((1, 2))).mean().item()
    expected = bce + (1 - ssim) + (1 - iou)
    assert basnet_hybrid_loss(logits, target).item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("spatial", [(32, 32), (16, 16, 16)])
def test_finite_ordered_and_differentiable(spatial: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 1, *spatial))
    onehot = F.one_hot(target[:, 0], 3).movedim(-1, 1).float()
    loss_fn = create_loss("basnet_hybrid")
    perfect = loss_fn(20 * (2 * onehot - 1), target)
    wrong = loss_fn(20 * (1 - 2 * onehot), target)
    assert torch.isfinite(perfect) and torch.isfinite(wrong)
    assert perfect < 1e-3 < 1.0 < wrong
    logits = torch.randn(2, 3, *spatial, requires_grad=True)
    loss_fn(logits, target).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert torch.isfinite(loss_fn(torch.full((2, 3, *spatial), 200.0) * onehot, target))  # saturated


def test_include_background_scores_channel_zero() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(1, 2, 16, 16), torch.randint(0, 2, (1, 1, 16, 16))
    fg = basnet_hybrid_loss(logits, target)
    both = basnet_hybrid_loss(logits, target, include_background=True)
    flipped = basnet_hybrid_loss(logits.flip(1), 1 - target)  # background scored as foreground
    assert both.item() == pytest.approx(((fg + flipped) / 2).item(), rel=1e-5)


def test_mismatched_target_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="basnet_hybrid: target"):
        basnet_hybrid_loss(torch.randn(1, 2, 8, 8), torch.zeros(1, 1, 4, 4, dtype=torch.long))
