"""Zoo-wide model tests: every registered model runs forward and backward; each family learns.

Parametrised over ``models.list_models()``, so a newly registered model is tested without
editing this file. The overfit test trains one representative per family on one synthetic
vessel image and asks for a training Dice above 0.9.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from datamodules.synthetic import generate_vessels
from models import create_loss, create_model, list_models, model_entry

_FWD_SHAPE = {2: (32, 32), 3: (32, 32, 32)}  # SwinUNETR needs multiples of 32
_FWD_BATCH = {2: 2, 3: 1}
_OUT_CHANNELS = 2

# family -> (representative model, tiny size kwargs, Adam steps, learning rate)
_OVERFIT: dict[str, tuple[str, dict[str, Any], int, float]] = {
    "cnn": ("unet", {"channels": (8, 16, 32)}, 30, 1e-2),
    "transformer": ("unetr", {}, 25, 3e-3),  # swin_unetr learns too, ~5x slower per step on CPU
    "mamba": ("umamba_bot", {"features": (8, 16, 32)}, 30, 1e-2),
    "xlstm": ("xlstm_unet", {"features": (8, 16, 32)}, 25, 1e-2),
    "gnn": ("hybridgnet_dense", {}, 40, 1e-2),
    # the first 2D hybrid by name before mask_former existed; mask_former's own overfit check is in
    # tests/models/test_mask_former.py (it needs lr 3e-3 and 60 steps on this sample)
    "hybrid": ("oss_net", None, 40, 1e-2),
}
_OVERFIT_SHAPE = (32, 32)
_DICE_MIN = 0.9


def _logits(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return out["logits"] if isinstance(out, dict) else out


def _build(name: str, spatial_dims: int, shape: tuple[int, ...], **kw: Any) -> torch.nn.Module:
    """Build with the input size passed on to models that declare a fixed one (registry metadata)."""
    if model_entry(name).meta["fixed_input_size"]:
        kw.setdefault("img_size", shape)
    return create_model(name, spatial_dims=spatial_dims, in_channels=1, out_channels=_OUT_CHANNELS, **kw)


def _cases() -> list:
    return [
        pytest.param(name, dims, id=f"{name}-{dims}d")
        for name in list_models()
        for dims in (2, 3)
        if dims in model_entry(name).meta["dims"]
    ]


@pytest.mark.parametrize(("name", "spatial_dims"), _cases())
def test_forward_backward(name: str, spatial_dims: int) -> None:
    torch.manual_seed(0)
    shape = _FWD_SHAPE[spatial_dims]
    net = _build(name, spatial_dims, shape, **model_entry(name).meta["small"])  # the CPU size
    x = torch.randn(_FWD_BATCH[spatial_dims], 1, *shape)
    out = net(x)
    logits = _logits(out)
    assert logits.shape == (x.shape[0], _OUT_CHANNELS, *shape)
    sides = out.get("aux", []) if isinstance(out, dict) else []
    if any(a.shape[:2] == logits.shape[:2] for a in sides):  # side logits: trained on the run's loss
        assert model_entry(name).meta["deep_supervision"] is not None, f"{name}: register deep_supervision"
    assert torch.isfinite(logits).all()
    logits.float().square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad and p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_registry_metadata() -> None:
    names = list_models()
    assert {"swin_unetr", "unetr", "umamba_bot", "umamba_enc"} <= set(names)
    for name in names:
        meta = model_entry(name).meta
        assert meta["family"].isidentifier() and meta["family"].islower(), name
        assert set(meta["dims"]) <= {2, 3} and meta["dims"]


@pytest.mark.parametrize(("spatial_dims", "shape"), [(2, (64, 64)), (3, (32, 32, 32))])
def test_unetr_default_img_size_is_default_patch(spatial_dims: int, shape: tuple[int, ...]) -> None:
    net = create_model("unetr", spatial_dims=spatial_dims, in_channels=1, out_channels=2)
    with torch.no_grad():
        assert net(torch.zeros(1, 1, *shape)).shape == (1, 2, *shape)


def _overfit_cases() -> list:
    """One representative per family; a family without a listed one gets its first 2D model at its
    small size (the papers' methods also have an overfit test each in their own test file)."""
    two_d = [n for n in reversed(list_models()) if 2 in model_entry(n).meta["dims"]]
    registered = {model_entry(n).meta["family"]: n for n in two_d}
    cases = []
    for family in sorted(set(_OVERFIT) | set(registered)):
        name, kw, steps, lr = _OVERFIT.get(family, (registered.get(family, ""), None, 40, 1e-2))
        if name not in list_models():
            name, kw = registered.get(family, ""), None
        if kw is None:
            kw = model_entry(name).meta["small"] if name else {}
        marks = () if name else pytest.mark.skip(reason=f"no {family} model registered yet")
        cases.append(pytest.param(name, kw, steps, lr, id=family, marks=marks))
    return cases


@pytest.mark.parametrize(("name", "size_kw", "steps", "lr"), _overfit_cases())
def test_family_overfits_one_sample(name: str, size_kw: dict[str, Any], steps: int, lr: float) -> None:
    torch.manual_seed(0)
    image, label = generate_vessels(_OVERFIT_SHAPE, 0, 0)
    x = torch.from_numpy(image)[None, None]
    y = torch.from_numpy(label)[None, None].long()
    net = _build(name, 2, _OVERFIT_SHAPE, **size_kw)
    loss_fn = create_loss("dice_ce")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(_logits(net(x)), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = _logits(net(x)).argmax(1, keepdim=True)  # training mode, as trained
    fg_pred, fg_true = pred == 1, y == 1
    dice = 2 * (fg_pred & fg_true).sum() / (fg_pred.sum() + fg_true.sum())
    assert dice > _DICE_MIN, f"{name}: training Dice {dice:.3f} after {steps} steps"
