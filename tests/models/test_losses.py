"""Every registered loss: finite values and gradients, minimal on a perfect prediction; plus
reference checks for soft clDice, SVLS, SAUNA labels, the MIP loss and composites."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import SoftclDiceLoss
from scipy import ndimage as ndi

from models import create_loss, list_losses, loss_entry
from models.losses import WeightedSumLoss
from models.losses.calibration import sauna_soft_labels, svls_kernel, svls_target

SIZE = {2: (24, 24), 3: (12, 12, 12)}
# losses that are ~0 on a very confident correct prediction (others only need to be lower
# than on a wrong one: NACL penalises large logits, SVLS/SAUNA fit soft targets)
EXACT = {"ce", "cldice", "cldice_skel", "dice", "dice_ce", "dice_focal", "focal", "mip", "tversky"}


def _cases() -> list[tuple[str, int]]:
    return [(n, d) for n in list_losses() for d in loss_entry(n).meta["dims"]]


def _vessels(dims: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """``(B, 1, *spatial)`` int64 labels: thresholded smooth noise (blobs, tubes, holes)."""
    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.standard_normal((batch, *SIZE[dims])), sigma=(0,) + (1.5,) * dims)
    return torch.from_numpy((noise > 0.3 * noise.std()).astype(np.int64)).unsqueeze(1)


def _logits(target: torch.Tensor, scale: float = 20.0, num_classes: int = 2) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(target[:, 0], num_classes).movedim(-1, 1).float()
    return scale * (2.0 * onehot - 1.0)


def test_every_loss_has_a_description() -> None:
    expected = "dice ce dice_ce focal dice_focal tversky cldice cldice_skel mip nacl svls sauna"
    assert set(expected.split()) <= set(list_losses())
    for name in list_losses():
        assert len(loss_entry(name).description) > 20, name


@pytest.mark.parametrize(("name", "dims"), _cases())
def test_loss_finite_with_gradients(name: str, dims: int) -> None:
    torch.manual_seed(0)
    target = _vessels(dims)
    logits = torch.randn(2, 2, *SIZE[dims], requires_grad=True)
    loss = create_loss(name)(logits, target)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "dims"), _cases())
def test_loss_minimal_on_perfect_prediction(name: str, dims: int) -> None:
    torch.manual_seed(0)
    target = _vessels(dims)
    loss = create_loss(name)
    perfect = float(loss(_logits(target), target))
    wrong = float(loss(_logits(1 - target), target))
    assert perfect < wrong
    if name in EXACT:
        assert perfect < 1e-2


def test_multiclass_input() -> None:
    target = torch.randint(0, 3, (2, 1, 16, 16))
    for name in list_losses():
        if 2 in loss_entry(name).meta["dims"]:
            logits = torch.randn(2, 3, 16, 16)
            assert torch.isfinite(create_loss(name)(logits, target)), name


def _soft_skel_numpy(img: np.ndarray, iters: int) -> np.ndarray:
    """Soft skeleton of Shit et al. (their released code) with SciPy min/max filters."""
    d = img.ndim
    lines = [tuple(3 if a == b else 1 for b in range(d)) for a in range(d)]

    def erode(x: np.ndarray) -> np.ndarray:
        mins = [ndi.minimum_filter(x, size=s, mode="constant", cval=np.inf) for s in lines]
        return np.minimum.reduce(mins)

    def dilate(x: np.ndarray) -> np.ndarray:
        return ndi.maximum_filter(x, size=3, mode="constant", cval=-np.inf)

    skel = np.maximum(img - dilate(erode(img)), 0)
    for _ in range(iters):
        img = erode(img)
        delta = np.maximum(img - dilate(erode(img)), 0)
        skel = skel + np.maximum(delta - skel * delta, 0)
    return skel


def _cldice_numpy(prob: np.ndarray, true: np.ndarray, iters: int, smooth: float) -> float:
    """clDice loss of one sample (Shit et al. 2021, Eq. 1-3) with the soft skeletons."""
    sp, st = _soft_skel_numpy(prob, iters), _soft_skel_numpy(true, iters)
    tprec = ((sp * true).sum() + smooth) / (sp.sum() + smooth)
    tsens = ((st * prob).sum() + smooth) / (st.sum() + smooth)
    return 1.0 - 2.0 * tprec * tsens / (tprec + tsens)


@pytest.mark.parametrize("dims", [2, 3])
def test_monai_soft_cldice_matches_numpy_formula(dims: int) -> None:
    torch.manual_seed(1)
    target = _vessels(dims, seed=dims)
    logits = torch.randn(2, 2, *SIZE[dims]) + 2.0 * _logits(target, scale=1.0)
    prob = torch.softmax(logits, 1)[:, 1].double().numpy()
    true = target[:, 0].double().numpy()
    want = np.mean([_cldice_numpy(p, t, iters=3, smooth=1.0) for p, t in zip(prob, true, strict=True)])
    monai = SoftclDiceLoss(iter_=3, smooth=1e-10, include_background=False, to_onehot_y=True, softmax=True)
    np.testing.assert_allclose(float(monai(logits.double(), target)), want, rtol=1e-6)
    # the registered term with alpha=1 is pure clDice (MONAI adds 1e-4 to the harmonic mean)
    ours = create_loss("cldice", alpha=1.0)(logits.double(), target)
    np.testing.assert_allclose(float(ours), want, atol=1e-3)


def test_cldice_skel_clDice_term_has_gradient_and_eval_is_deterministic() -> None:
    torch.manual_seed(0)
    target = _vessels(2)
    logits = torch.randn(2, 2, 24, 24, requires_grad=True)
    loss = create_loss("cldice_skel", alpha=1.0, num_iter=6)
    loss(logits, target).backward()
    assert logits.grad.abs().sum() > 0
    loss.eval()
    with torch.no_grad():
        assert float(loss(logits, target)) == float(loss(logits, target))


def test_composites() -> None:
    target = _vessels(3)
    logits = torch.randn(2, 2, *SIZE[3])
    combo = create_loss("dice+cldice", cldice={"alpha": 0.3})
    assert isinstance(combo, WeightedSumLoss)
    want = create_loss("dice")(logits, target) + create_loss("cldice", alpha=0.3)(logits, target)
    torch.testing.assert_close(combo(logits, target), want)
    mix = create_loss("dice_ce+0.5*mip")
    want = create_loss("dice_ce")(logits, target) + 0.5 * create_loss("mip")(logits, target)
    torch.testing.assert_close(mix(logits, target), want)
    assert torch.isfinite(create_loss("dice+cldice_skel")(logits, target))


def test_mip_sees_projections_only() -> None:
    target = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    target[0, 0, 2:6, 4, 3] = 1  # a vessel along H at depth 3
    shifted = torch.roll(target, 2, dims=-1)  # same vessel at another depth: same z-MIP
    loss = create_loss("mip")
    assert float(loss(_logits(shifted), target)) < 1e-3
    broken = target.clone()
    broken[0, 0, 3, 4, 3] = 0  # a gap is visible in the projection
    assert float(loss(_logits(broken), target)) > 0.05
    assert float(create_loss("mip", multi_axis=True)(_logits(shifted), target)) > 0.05
    with pytest.raises(ValueError):
        loss(torch.randn(1, 2, 8, 8), target[..., 0])


def test_svls_kernel_and_targets() -> None:
    for dims in (2, 3):
        k = svls_kernel(dims)
        assert k.sum().item() == pytest.approx(1.0)
        assert k[(1,) * dims].item() == pytest.approx(0.5)
    target = torch.zeros(1, 1, 9, 9, dtype=torch.long)
    target[..., 3:6, 3:6] = 1
    soft = svls_target(target, 2, svls_kernel(2))
    torch.testing.assert_close(soft.sum(1), torch.ones(1, 9, 9))
    assert soft[0, 1, 4, 4] == 1.0 and soft[0, 0, 0, 0] == 1.0  # one-hot away from edges
    assert 0.0 < soft[0, 1, 3, 3] < 1.0  # smoothed at the boundary


def test_sauna_soft_labels() -> None:
    mask = torch.zeros(1, 32, 32)
    mask[0, 4:20, 4:20] = 1  # thick object: soft boundary
    mask[0, 26, 2:30] = 1  # thin vessel: stays confident
    soft = sauna_soft_labels(mask)
    assert soft.min() >= 0 and soft.max() <= 1
    assert soft[0, 12, 12] == pytest.approx(1.0)  # centre of the thick object
    assert soft[0, 26, 15] > 0.9  # thin vessel
    assert 0.2 < soft[0, 4, 12] < 0.9  # thick boundary is uncertain
    assert soft[0, 0, 31] == 0.0  # far background
    assert torch.equal(sauna_soft_labels(torch.zeros(1, 8, 8)), torch.zeros(1, 8, 8))


def test_cldice_skel_alone_drives_free_logits_to_the_vessels() -> None:
    """Gradient descent on free logits with pure clDice (Menten skeleton) recovers the label."""
    from datamodules.synthetic import generate_vessels

    torch.manual_seed(0)
    target = torch.from_numpy(generate_vessels((32, 32), 0, 0)[1])[None, None].long()
    logits = (0.1 * torch.randn(1, 2, 32, 32)).requires_grad_()
    opt = torch.optim.Adam([logits], lr=0.1)
    loss = create_loss("cldice_skel", alpha=1.0, num_iter=8)
    first = float(loss(logits, target).detach())
    for _ in range(40):
        value = loss(logits, target)
        opt.zero_grad()
        value.backward()
        opt.step()
    pred = logits.detach().argmax(1)
    fg = target[:, 0] == 1
    dice = 2 * (pred.bool() & fg).sum() / (pred.sum() + fg.sum())
    assert float(value.detach()) < 0.1 < first
    assert dice > 0.9
