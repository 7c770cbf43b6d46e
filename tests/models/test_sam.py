"""SAM / ASAM optimiser: the two-step update checked by hand on a quadratic.

``L(a, b) = 0.5 * (c_a a^2 + c_b b^2)`` has gradient ``(c_a a, c_b b)``, so every quantity of one
SAM update (the climb ``e``, the gradient at ``w + e``, the new ``w``) is written out with ``math``.
"""

from __future__ import annotations

import copy
import math
import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from models.optim.sam import SAM, SAMStateError, frozen_norm_stats

_C = (1.0, 2.0)


def _params(a: float, b: float) -> tuple[nn.Parameter, nn.Parameter]:
    return tuple(nn.Parameter(torch.tensor([v], dtype=torch.float64)) for v in (a, b))


def _loss(pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    return 0.5 * (_C[0] * pa.square() + _C[1] * pb.square()).sum()


def _sam_update(opt: SAM, pa: nn.Parameter, pb: nn.Parameter) -> tuple[list[float], list[float]]:
    """One manual SAM update; returns the weights at ``w + e`` and after the step."""
    _loss(pa, pb).backward()
    opt.first_step(zero_grad=True)
    climbed = [pa.item(), pb.item()]
    _loss(pa, pb).backward()
    opt.second_step(zero_grad=True)
    return climbed, [pa.item(), pb.item()]


def test_sam_two_step_update_by_hand() -> None:
    rho, lr = 0.5, 0.1
    a, b = 3.0, 4.0
    pa, pb = _params(a, b)
    opt = SAM([pa, pb], torch.optim.SGD, rho=rho, lr=lr)
    climbed, new = _sam_update(opt, pa, pb)
    ga, gb = _C[0] * a, _C[1] * b  # 3, 8
    norm = math.sqrt(ga**2 + gb**2)  # one norm over both tensors: sqrt(73)
    ea, eb = rho * ga / norm, rho * gb / norm
    assert climbed == pytest.approx([a + ea, b + eb], abs=1e-9)
    ga_sam, gb_sam = _C[0] * (a + ea), _C[1] * (b + eb)
    assert new == pytest.approx([a - lr * ga_sam, b - lr * gb_sam], abs=1e-9)
    # differs from plain SGD, which would give (a - lr * ga, b - lr * gb)
    assert abs(new[1] - (b - lr * gb)) > 1e-3


def test_asam_two_step_update_by_hand() -> None:
    rho, lr, eta = 0.5, 0.1, 0.1
    a, b = 3.0, -4.0
    pa, pb = _params(a, b)
    opt = SAM([pa, pb], torch.optim.SGD, rho=rho, adaptive=True, eta=eta, lr=lr)
    climbed, new = _sam_update(opt, pa, pb)
    ga, gb = _C[0] * a, _C[1] * b
    ta, tb = abs(a) + eta, abs(b) + eta  # T_w = |w| + eta
    norm = math.sqrt((ta * ga) ** 2 + (tb * gb) ** 2)  # ||T_w g||
    ea, eb = rho * ta**2 * ga / norm, rho * tb**2 * gb / norm  # rho T_w^2 g / ||T_w g||
    assert climbed == pytest.approx([a + ea, b + eb], abs=1e-9)
    assert new == pytest.approx([a - lr * _C[0] * (a + ea), b - lr * _C[1] * (b + eb)], abs=1e-9)


def test_parameter_groups_keep_their_own_weight_decay() -> None:
    """As UU-Mamba trains: the loss weights in a group without weight decay."""
    rho, lr, wd = 0.5, 0.1, 0.2
    a, b = 3.0, 4.0
    pa, pb = _params(a, b)
    groups = [{"params": [pa], "weight_decay": wd}, {"params": [pb], "weight_decay": 0.0}]
    opt = SAM(groups, torch.optim.SGD, rho=rho, lr=lr)
    _, new = _sam_update(opt, pa, pb)
    ga, gb = _C[0] * a, _C[1] * b
    norm = math.sqrt(ga**2 + gb**2)  # the climb uses one norm over both groups
    ea, eb = rho * ga / norm, rho * gb / norm
    # SGD adds weight_decay * w (at the restored w) to the gradient taken at w + e
    expected = [a - lr * (_C[0] * (a + ea) + wd * a), b - lr * _C[1] * (b + eb)]
    assert new == pytest.approx(expected, abs=1e-9)


def test_parameter_without_gradient_is_left_alone() -> None:
    pa, pb = _params(3.0, 4.0)
    frozen = nn.Parameter(torch.tensor([7.0], dtype=torch.float64))
    opt = SAM([pa, pb, frozen], torch.optim.SGD, rho=0.5, lr=0.1)
    _sam_update(opt, pa, pb)
    assert frozen.item() == 7.0


def test_step_with_closure_equals_manual_steps_with_momentum() -> None:
    runs = []
    for use_closure in (False, True):
        pa, pb = _params(3.0, 4.0)
        opt = SAM([pa, pb], torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
        for _ in range(3):
            if use_closure:

                def closure(pa: nn.Parameter = pa, pb: nn.Parameter = pb, opt: SAM = opt) -> torch.Tensor:
                    opt.zero_grad()
                    loss = _loss(pa, pb)
                    loss.backward()
                    return loss

                opt.step(closure)
            else:
                _sam_update(opt, pa, pb)
        runs.append([pa.item(), pb.item()])
    assert runs[0] == pytest.approx(runs[1], abs=1e-12)


def test_rho_zero_is_the_base_optimizer() -> None:
    pa, pb = _params(3.0, 4.0)
    qa, qb = _params(3.0, 4.0)
    sam = SAM([pa, pb], torch.optim.Adam, rho=0.0, lr=0.1)
    adam = torch.optim.Adam([qa, qb], lr=0.1)
    for _ in range(3):
        _sam_update(sam, pa, pb)
        adam.zero_grad()
        _loss(qa, qb).backward()
        adam.step()
    assert [pa.item(), pb.item()] == pytest.approx([qa.item(), qb.item()], abs=1e-12)


def test_scheduler_and_state_dict_reach_the_base_optimizer() -> None:
    pa, pb = _params(3.0, 4.0)
    opt = SAM([pa, pb], torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)
    _sam_update(opt, pa, pb)
    with warnings.catch_warnings():  # torch cannot see second_step as optimizer.step
        warnings.simplefilter("ignore", UserWarning)
        sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    state = copy.deepcopy(opt.state_dict())  # torch shares the buffers' storage otherwise
    assert any("momentum_buffer" in s for s in state["state"].values())
    qa, qb = _params(pa.item(), pb.item())
    restored = SAM([qa, qb], torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    restored.load_state_dict(state)
    _sam_update(opt, pa, pb)
    _sam_update(restored, qa, qb)
    assert [qa.item(), qb.item()] == pytest.approx([pa.item(), pb.item()], abs=1e-12)
    assert restored.param_groups[0]["rho"] == 0.05


def test_out_of_order_calls_and_bad_arguments_raise() -> None:
    pa, pb = _params(3.0, 4.0)
    opt = SAM([pa, pb], torch.optim.SGD, lr=0.1)
    with pytest.raises(SAMStateError):
        opt.second_step()
    _loss(pa, pb).backward()
    opt.first_step()
    with pytest.raises(SAMStateError):
        opt.first_step()
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="rho"):
        SAM([pa], torch.optim.SGD, rho=-1.0, lr=0.1)


def test_frozen_norm_stats_keeps_running_statistics() -> None:
    bn = nn.BatchNorm1d(3, momentum=None)
    bn.train()
    bn(torch.randn(8, 3))
    mean, tracked = bn.running_mean.clone(), bn.num_batches_tracked.clone()
    with frozen_norm_stats(bn):
        bn(torch.randn(8, 3) + 5)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.num_batches_tracked, tracked)
    assert bn.momentum is None
    bn(torch.randn(8, 3) + 5)
    assert not torch.equal(bn.running_mean, mean)


class _SAMModule(pl.LightningModule):
    """The training step with SAM, in Lightning's manual or automatic optimisation."""

    def __init__(self, manual: bool) -> None:
        super().__init__()
        self.automatic_optimization = not manual
        self.pa, self.pb = _params(3.0, 4.0)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:  # Lightning's closure runs this step twice per update
            return _loss(self.pa, self.pb)
        opt = self.optimizers()

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = _loss(self.pa, self.pb)
            self.manual_backward(loss)
            return loss

        opt.step(closure=closure)  # opt.step, not first/second_step: Lightning counts steps there
        self.lr_schedulers().step()
        return None

    def configure_optimizers(self) -> dict:
        opt = SAM(self.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.zeros(4, 1))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("manual", [True, False], ids=["manual", "automatic"])
def test_lightning_training_step_matches_hand_update(manual: bool) -> None:
    module = _SAMModule(manual)
    trainer = pl.Trainer(
        max_steps=1,
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module)
    assert trainer.global_step == 1
    pa, pb = _params(3.0, 4.0)
    _, expected = _sam_update(SAM([pa, pb], torch.optim.SGD, rho=0.5, lr=0.1), pa, pb)
    assert [module.pa.item(), module.pb.item()] == pytest.approx(expected, abs=1e-9)
