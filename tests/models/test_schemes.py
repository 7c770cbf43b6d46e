"""Training schemes (``models/schemes/``): the maths by hand, every scheme's loss on tiny 2D / 3D
nets, the supervised scheme against a hand-written training loop, and checkpoints with a teacher.

Expected values are computed by hand here (numbers in comments), never with segbench's own
functions.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bench.errors import UserError
from models import SegmentationModule, create_loss, create_scheme, list_schemes, scheme_entry
from models.schemes.base import TeacherScheme
from models.schemes.functional import (
    confident_targets,
    deformation_consistency,
    forward_noise_correction,
    grad_reverse,
    random_displacement,
    sigmoid_rampup,
    softmax_mse,
    voxel_shift,
    warp,
)

SCHEMES = ("supervised", "mean_teacher", "ds6", "pseudo_label", "scribble")


def _net(dims: int, kernel: int = 3) -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return conv(1, 2, kernel, padding=kernel // 2)


def _module(net: nn.Module, scheme: Any = None, loss: str = "ce", **kw: Any) -> SegmentationModule:
    dims = net.weight.dim() - 2
    base = dict(num_classes=2, roi_size=(8,) * dims, lr=0.01, max_steps=10, scheduler="none")
    base.update(kw)
    return SegmentationModule(net, create_loss(loss), scheme=scheme, **base)


def _batch(dims: int, unlabelled: bool, scribble: bool = False, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (2, 1) + (8,) * dims
    image = torch.randn(shape, generator=g)
    label = (image > 0).long()
    if scribble:  # keep a few scribbled voxels, 255 elsewhere
        keep = torch.rand(shape, generator=g) < 0.2
        label = torch.where(keep, label, torch.full_like(label, 255))
    batch = {"image": image, "label": label}
    if unlabelled:
        batch["image_u"] = torch.randn((3, 1) + (8,) * dims, generator=g)
    return batch


# ---- pure functions ------------------------------------------------------------------------------


def test_consistency_is_zero_for_identical_views_and_hand_mse() -> None:
    p = torch.tensor([[[[0.2, 0.6]], [[0.8, 0.4]]]])  # (1, 2, 1, 2)
    q = torch.tensor([[[[0.5, 0.1]], [[0.5, 0.9]]]])
    assert softmax_mse(p, p).item() == 0.0
    # differences -0.3, 0.5, 0.3, -0.5 -> squares 0.09 0.25 0.09 0.25 -> mean 0.17
    assert softmax_mse(p, q).item() == pytest.approx(0.17, abs=1e-7)


def test_sigmoid_rampup_by_hand() -> None:
    assert sigmoid_rampup(0, 100) == pytest.approx(0.006737947)  # exp(-5)
    assert sigmoid_rampup(50, 100) == pytest.approx(0.2865048)  # exp(-1.25)
    assert sigmoid_rampup(100, 100) == 1.0
    assert sigmoid_rampup(250, 100) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0


def test_mean_teacher_weight_ramps_over_a_fraction_of_the_run() -> None:
    scheme = create_scheme("mean_teacher", weight=2.0, rampup=0.5)
    module = _module(_net(2), scheme, max_steps=10)  # ramp over 5 steps
    for step, hand in [(0, math.exp(-5)), (2, math.exp(-5 * 0.6**2)), (4, math.exp(-5 * 0.2**2)), (7, 1.0)]:
        scheme.step.fill_(step)
        assert 2.0 * scheme.ramp(module, 0.5) == pytest.approx(2.0 * hand)


def test_warp_identity_field_is_exact() -> None:
    x = torch.randn(2, 3, 5, 7)
    assert torch.allclose(warp(x, torch.zeros(1, 5, 7, 2)), x, atol=1e-6)
    x3 = torch.randn(1, 2, 4, 5, 6)
    assert torch.allclose(warp(x3, torch.zeros(1, 4, 5, 6, 3)), x3, atol=1e-6)


def test_integer_translation_and_its_inverse_2d() -> None:
    x = torch.randn(1, 1, 8, 9)
    d = voxel_shift((1, -2), (8, 9))  # out[i, j] = x[i + 1, j - 2]
    moved = warp(x, d)
    assert torch.allclose(moved[0, 0, 0:7, 2:9], x[0, 0, 1:8, 0:7], atol=1e-5)
    back = warp(moved, -d)
    assert torch.allclose(back[0, 0, 1:7, 2:7], x[0, 0, 1:7, 2:7], atol=1e-5)  # the interior
    assert not torch.allclose(moved, x, atol=1e-3)


def test_integer_translation_and_its_inverse_3d() -> None:
    x = torch.randn(1, 2, 6, 7, 8)
    d = voxel_shift((-1, 2, 1), (6, 7, 8))  # out[a, b, c] = x[a - 1, b + 2, c + 1]
    moved = warp(x, d)
    assert torch.allclose(moved[:, :, 1:6, 0:5, 0:7], x[:, :, 0:5, 2:7, 1:8], atol=1e-5)
    back = warp(moved, -d)
    assert torch.allclose(back[:, :, 0:5, 2:7, 1:8], x[:, :, 0:5, 2:7, 1:8], atol=1e-5)  # the interior


def test_random_field_is_smooth_bounded_and_seeded() -> None:
    a = random_displacement(
        2, (16, 12), magnitude=0.05, control_points=5, generator=torch.Generator().manual_seed(3)
    )
    b = random_displacement(
        2, (16, 12), magnitude=0.05, control_points=5, generator=torch.Generator().manual_seed(3)
    )
    assert a.shape == (2, 16, 12, 2) and torch.equal(a, b)
    assert a.abs().max() > 0 and a.abs().max() <= 0.05 * 1.3  # bicubic may overshoot a little
    assert torch.all(a[:, 0, 0] == 0) and torch.all(a[:, -1, -1] == 0)  # the locked corners
    c = random_displacement(1, (6, 6, 6), magnitude=0.05, control_points=4)
    assert c.shape == (1, 6, 6, 6, 3)


class _PositionBias(nn.Module):
    """A 1x1 convolution plus a bias that oscillates along the last axis: not deformation-equivariant."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wave = 2.0 * torch.sin(1.3 * torch.arange(x.shape[-1], dtype=x.dtype))
        return self.conv(x) + torch.stack([wave * 0, wave])[None, :, None, :]


def test_ds6_consistency_vanishes_for_an_equivariant_net_only() -> None:
    x = torch.randn(2, 1, 16, 16)
    field = random_displacement(
        2, (16, 16), magnitude=0.1, control_points=5, generator=torch.Generator().manual_seed(0)
    )
    conv = _net(2, kernel=1)
    with torch.no_grad():
        assert deformation_consistency(conv(x), conv(warp(x, field)), field).item() < 1e-10
        biased = _PositionBias()
        assert deformation_consistency(biased(x), biased(warp(x, field)), field).item() > 1e-4


def test_ds6_scheme_loss_is_supervised_only_for_an_equivariant_net() -> None:
    scheme = create_scheme("ds6", magnitude=0.1, deformed_supervised=False)
    module = _module(_net(2, kernel=1), scheme)
    batch = _batch(2, unlabelled=True)
    with torch.no_grad():
        extra = scheme.loss(module, batch) - module.training_loss_supervised(batch)
    assert abs(extra.item()) < 1e-6
    module3 = _module(_net(2, kernel=3), create_scheme("ds6", magnitude=0.1, deformed_supervised=False))
    with torch.no_grad():
        extra3 = module3.scheme.loss(module3, batch) - module3.training_loss_supervised(batch)
    assert extra3.item() > 1e-7  # zero padding at the border breaks equivariance


def test_partial_ce_by_hand_and_unscribbled_voxels_do_not_count() -> None:
    loss = create_loss("partial_ce")
    logits = torch.tensor([[[[1.0, 5.0, 0.5]], [[0.0, -2.0, 2.0]]]], requires_grad=True)  # (1, 2, 1, 3)
    target = torch.tensor([[[[0, 255, 1]]]])
    # voxel 0: -log(e^1 / (e^1 + e^0)); voxel 2: -log(e^2 / (e^0.5 + e^2)); voxel 1 ignored
    hand = 0.5 * (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(-1.5)))
    assert loss(logits, target).item() == pytest.approx(hand, rel=1e-6)
    moved = logits.detach().clone()
    moved[0, :, 0, 1] = torch.tensor([-7.0, 9.0])
    assert loss(moved, target).item() == pytest.approx(hand, rel=1e-6)
    assert loss(logits, torch.tensor([[[[0, 255, 1]]]])).item() == loss(logits, target).item()
    none = loss(logits, torch.full_like(target, 255))
    assert none.item() == 0.0
    none.backward()
    assert logits.grad is not None and torch.all(torch.isfinite(logits.grad))


def test_pseudo_label_targets_only_where_the_teacher_is_confident() -> None:
    logits = torch.tensor([[[2.0, 0.0, 0.0]], [[0.0, 0.0, 3.0]]])[None]  # (1, 2, 1, 3)
    probs = torch.softmax(logits, 1)  # max: 0.8808, 0.5, 0.9526
    target, mask = confident_targets(probs, 0.85)
    assert mask.tolist() == [[[True, False, True]]]
    assert target[mask].tolist() == [0, 1]
    _, mask95 = confident_targets(probs, 0.95)
    assert mask95.tolist() == [[[False, False, True]]]


def test_forward_noise_correction_by_hand() -> None:
    p = torch.tensor([[0.7, 0.3]]).reshape(1, 2, 1, 1)
    out = forward_noise_correction(p, 0.2)  # (0.8 * 0.7 + 0.1, 0.8 * 0.3 + 0.1)
    assert out.flatten().tolist() == pytest.approx([0.66, 0.34])
    three = forward_noise_correction(torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1), 0.3)
    assert three.flatten().tolist() == pytest.approx([0.8, 0.1, 0.1])


def test_pseudo_loss_with_noise_correction_by_hand() -> None:
    scheme = create_scheme("pseudo_label", threshold=0.6, noise_rate=0.2)
    logits_u = torch.tensor([0.0, math.log(3.0)]).reshape(1, 2, 1, 1)  # student p = (0.25, 0.75)
    teacher = torch.tensor([0.3, 0.7]).reshape(1, 2, 1, 1)  # target 1, kept
    # corrected p_1 = 0.8 * 0.75 + 0.1 = 0.7
    assert scheme.pseudo_loss(logits_u, teacher).item() == pytest.approx(-math.log(0.7), rel=1e-6)


def test_gradient_reversal_flips_the_sign() -> None:
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    (3.0 * grad_reverse(x)).sum().backward()
    assert x.grad.tolist() == [-3.0, -3.0]


def test_adversarial_gradient_reaching_the_segmentation_net_is_reversed() -> None:
    scheme = create_scheme("pseudo_label", adv_weight=1.0)
    net = _net(2)
    _module(net, scheme)
    batch = _batch(2, unlabelled=True)
    scheme.adversarial_loss(net(batch["image"]), net(batch["image_u"])).backward()
    reversed_grad = net.weight.grad.clone()
    disc_grad = scheme.discriminator.body[0].weight.grad.clone()
    net.zero_grad()
    scheme.discriminator.zero_grad()
    d_l = scheme.discriminator(torch.softmax(net(batch["image"]), 1))  # the same BCE, no reversal
    d_u = scheme.discriminator(torch.softmax(net(batch["image_u"]), 1))
    plain = 0.5 * (
        F.binary_cross_entropy_with_logits(d_l, torch.ones_like(d_l))
        + F.binary_cross_entropy_with_logits(d_u, torch.zeros_like(d_u))
    )
    plain.backward()
    assert reversed_grad.abs().sum() > 0
    assert torch.allclose(reversed_grad, -net.weight.grad, atol=1e-7)
    assert torch.allclose(disc_grad, scheme.discriminator.body[0].weight.grad, atol=1e-7)  # not reversed


# ---- EMA teacher -------------------------------------------------------------------------------------


def test_ema_update_by_hand() -> None:
    scheme = create_scheme("mean_teacher", decay=0.99)
    module = _module(_net(2), scheme)
    with torch.no_grad():
        module.net.weight.add_(1.0)  # the student moves away from the teacher copy
    t0, s = scheme.teacher.weight.detach().clone(), module.net.weight.detach().clone()
    module.on_train_batch_end(None, None, 0)  # step 1: alpha = min(1 - 1/2, 0.99) = 0.5
    assert torch.allclose(scheme.teacher.weight, 0.5 * t0 + 0.5 * s, atol=1e-7)
    scheme.step.fill_(999)  # the next is step 1000: alpha = min(1 - 1/1001, 0.99) = 0.99
    t1 = scheme.teacher.weight.detach().clone()
    module.on_train_batch_end(None, None, 1)
    assert torch.allclose(scheme.teacher.weight, 0.99 * t1 + 0.01 * s, atol=1e-7)
    assert int(scheme.step) == 1000


# ---- every scheme on tiny nets --------------------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("unlabelled", [False, True])
@pytest.mark.parametrize("name", SCHEMES)
def test_every_scheme_trains_the_student_only(name: str, dims: int, unlabelled: bool) -> None:
    kwargs = {"adv_weight": 0.5, "threshold": 0.5} if name == "pseudo_label" else {}
    if name == "scribble":
        kwargs = {"entropy": 0.1}
    scheme = create_scheme(name, **kwargs)
    module = _module(_net(dims), scheme, loss="partial_ce" if name == "scribble" else "ce")
    scheme.step.fill_(5)  # past the start of any ramp-up
    batch = _batch(dims, unlabelled, scribble=name == "scribble")
    loss = module.training_loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert module.net.weight.grad is not None and module.net.weight.grad.abs().sum() > 0
    teacher = getattr(scheme, "teacher", None)
    if isinstance(scheme, TeacherScheme):
        assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    module.on_train_batch_end(None, batch, 0)
    assert int(scheme.step) == 6


def test_scheme_terms_are_added_only_with_unlabelled_images() -> None:
    batch = _batch(2, unlabelled=True)
    scheme = create_scheme("pseudo_label", threshold=0.0, weight=1.0, rampup=0.0)
    module = _module(_net(2), scheme)
    with torch.no_grad():
        module.net.weight.add_(0.3)  # student != teacher: the pseudo-label CE is positive
        with_u = module.training_loss(batch)
        without = module.training_loss({k: v for k, v in batch.items() if k != "image_u"})
        sup = module.training_loss_supervised(batch)
    assert without.item() == sup.item()
    assert with_u.item() > sup.item() + 1e-4


def test_mean_teacher_consistency_covers_labelled_and_unlabelled_images() -> None:
    scheme = create_scheme("mean_teacher", weight=2.0, noise_std=0.0, rampup=0.0)
    module = _module(_net(2), scheme)
    batch = _batch(2, unlabelled=True)
    with torch.no_grad():
        assert scheme.loss(module, batch).item() == module.training_loss_supervised(batch).item()
        module.net.weight.mul_(-1.5)  # the student leaves the teacher
        x = torch.cat([batch["image"], batch["image_u"]])
        s, t = torch.softmax(module.net(x), 1), torch.softmax(scheme.teacher(x), 1)
        hand = ((s - t) ** 2).sum() / s.numel()
        extra = scheme.loss(module, batch) - module.training_loss_supervised(batch)
    assert hand.item() > 1e-3
    assert extra.item() == pytest.approx(2.0 * hand.item(), rel=1e-5)


# ---- the supervised scheme is today's module ----------------------------------------------------------


def test_supervised_scheme_is_bit_identical_to_the_plain_loss_over_three_steps() -> None:
    batches = [_batch(2, unlabelled=False, seed=s) for s in range(3)]
    runs = []
    for scheme in (None, create_scheme("supervised")):
        module = _module(_net(2), scheme, lr=0.05, weight_decay=0.01)
        opt = module.configure_optimizers()["optimizer"]
        losses = []
        for i, batch in enumerate(batches):
            opt.zero_grad()
            loss = module.training_loss(batch)
            loss.backward()
            opt.step()
            module.on_train_batch_end(None, batch, i)
            losses.append(loss.item())
        runs.append((losses, module.net.weight.detach().clone()))
    ref = _net(2)  # the training loop written out: CE of the net's logits, AdamW
    opt = torch.optim.AdamW(ref.parameters(), lr=0.05, weight_decay=0.01)
    hand = []
    for batch in batches:
        opt.zero_grad()
        loss = F.cross_entropy(ref(batch["image"]), batch["label"][:, 0])
        loss.backward()
        opt.step()
        hand.append(loss.item())
    assert runs[0][0] == hand and runs[1][0] == hand
    assert torch.equal(runs[0][1], ref.weight.detach()) and torch.equal(runs[1][1], ref.weight.detach())


def test_supervised_module_keeps_todays_checkpoint_keys() -> None:
    for scheme in (None, create_scheme("supervised")):
        module = _module(_net(2), scheme)
        assert set(module.state_dict()) == {"net.weight", "net.bias"}


# ---- registry and errors ------------------------------------------------------------------------------


def test_registrations_say_what_the_runner_needs() -> None:
    assert set(SCHEMES) <= set(list_schemes())
    for name in ("supervised", "mean_teacher", "ds6"):  # train (also) on labelled images alone
        assert scheme_entry(name).meta["needs_unlabelled"] is False
    assert scheme_entry("pseudo_label").meta["needs_unlabelled"] is True
    for name in ("mean_teacher", "ds6", "pseudo_label"):
        assert scheme_entry(name).meta["train_labels"] == "dense"
    assert scheme_entry("scribble").meta["train_labels"] == "scribble"
    assert scheme_entry("scribble").meta["loss"] == "partial_ce"
    assert scheme_entry("mean_teacher").meta["options"] == ("weight", "decay", "noise_std", "rampup")


def test_bad_option_and_unknown_scheme_are_one_line_errors() -> None:
    with pytest.raises(UserError) as bad:
        create_scheme("mean_teacher", wieght=1.0)
    msg = str(bad.value)
    assert "\n" not in msg and "'mean_teacher'" in msg and "'wieght'" in msg and "weight, decay" in msg
    with pytest.raises(KeyError) as unknown:
        create_scheme("mean_teachr")
    msg = str(unknown.value)
    assert "\n" not in msg and "'mean_teachr'" in msg and "mean_teacher" in msg


# ---- checkpoints, optimiser, the kept network ------------------------------------------------------------


def _one_step(module: SegmentationModule, batch: dict[str, torch.Tensor]) -> None:
    opt = module.configure_optimizers()["optimizer"]
    opt.zero_grad()
    module.training_loss(batch).backward()
    opt.step()
    module.on_train_batch_end(None, batch, 0)


def test_checkpoint_holds_and_restores_the_teacher() -> None:
    kwargs = {"adv_weight": 0.5}
    module = _module(_net(2), create_scheme("pseudo_label", **kwargs))
    _one_step(module, _batch(2, unlabelled=True))
    state = module.state_dict()
    assert any(k.startswith("scheme.teacher.") for k in state)
    assert any(k.startswith("scheme.discriminator.") for k in state)
    fresh = _module(nn.Conv2d(1, 2, 3, padding=1), create_scheme("pseudo_label", **kwargs))
    fresh.load_state_dict(state, strict=True)
    assert torch.equal(fresh.scheme.teacher.weight, module.scheme.teacher.weight)
    assert not torch.equal(fresh.scheme.teacher.weight, module.net.weight)  # EMA, not the student
    assert int(fresh.scheme.step) == 1


def test_kept_network_holds_no_teacher_and_optimiser_has_the_discriminator() -> None:
    module = _module(_net(2), create_scheme("pseudo_label", adv_weight=0.5), weight_decay=0.1)
    assert set(module.net.state_dict()) == {"weight", "bias"}
    groups = module.configure_optimizers()["optimizer"].param_groups
    disc = {id(p) for p in module.scheme.discriminator.parameters()}
    assert {id(p) for p in groups[1]["params"]} == disc and groups[1]["weight_decay"] == 0.0
    assert groups[0]["weight_decay"] == 0.1
    teacher = {id(p) for p in module.scheme.teacher.parameters()}
    assert not teacher & {id(p) for g in groups for p in g["params"]}


class _Patches(Dataset):
    def __init__(self) -> None:
        self.items = [{k: v[0] for k, v in _batch(2, unlabelled=True, seed=s).items()} for s in range(4)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i]


@pytest.mark.parametrize("optimizer", ["adamw", "sam"])
def test_lightning_fit_steps_the_teacher(optimizer: str) -> None:
    scheme = create_scheme("mean_teacher")
    module = _module(_net(2), scheme, optimizer=optimizer, max_steps=2)
    before = copy.deepcopy(scheme.teacher.weight.detach())
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, DataLoader(_Patches(), batch_size=2))
    assert int(scheme.step) == 2
    assert not torch.equal(scheme.teacher.weight, before)
