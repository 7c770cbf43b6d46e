"""The one LightningModule: optimiser and weight decay from config, the LR schedule over a real fit,
and the validation Dice rules (the records' rules: NaN for empty-vs-empty, field of view applied).

Expected values are computed by hand here, never with segbench's own functions.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from models import SegmentationModule


class _Constant(nn.Module):
    """A 'network' with one scalar parameter whose logits are fixed maps (for validation tests)."""

    def __init__(self, logits: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.maps = logits or []
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.maps:
            out = self.maps[self.calls % len(self.maps)]
            self.calls += 1
            return out.expand(x.shape[0], *out.shape[1:]) + 0 * self.w
        return torch.cat([-x, x], 1) * self.w


class _MSE(nn.Module):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (logits[:, 1:] - target.float()).pow(2).mean()


def _module(**kw: Any) -> SegmentationModule:
    base = dict(num_classes=2, roi_size=(4, 4), lr=0.1, max_steps=10, scheduler="none", warmup_steps=0)
    base.update(kw)
    return SegmentationModule(_Constant(), _MSE(), **base)


class _Patches(Dataset):
    def __init__(self, n: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, 4, 4, generator=g)
        self.y = (self.x > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.x[i], "label": self.y[i]}


def _trainer(**kw: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kw,
    )


# ---- optimiser and weight decay -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_optimizer_choice_and_weight_decay_reach_torch(name: str) -> None:
    module = _module(optimizer=name, weight_decay=0.25, momentum=0.5)
    module.trainer = None  # configure_optimizers needs no trainer for a step budget
    opt = module.configure_optimizers()["optimizer"]
    expected = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[name]
    assert type(opt) is expected
    assert opt.param_groups[0]["weight_decay"] == 0.25
    assert opt.param_groups[0]["lr"] == 0.1


def test_adamw_weight_decay_is_applied_in_a_step() -> None:
    """AdamW with zero gradient: the only change is decoupled decay, p <- p (1 - lr * wd)."""
    module = _module(optimizer="adamw", weight_decay=0.5, lr=0.1)
    with torch.no_grad():
        module.net.w.fill_(2.0)
    opt = module.configure_optimizers()["optimizer"]
    module.net.w.grad = torch.zeros(())
    opt.step()
    assert module.net.w.item() == pytest.approx(2.0 * (1 - 0.1 * 0.5))


def test_sgd_step_is_nesterov_momentum_with_l2_decay() -> None:
    """One SGD step from p=1 with grad g=0.5, wd=0.1: d = g + wd p = 0.6; Nesterov: p -= lr (d + m d)."""
    module = _module(optimizer="sgd", weight_decay=0.1, lr=0.1, momentum=0.9)
    with torch.no_grad():
        module.net.w.fill_(1.0)
    opt = module.configure_optimizers()["optimizer"]
    module.net.w.grad = torch.tensor(0.5)
    opt.step()
    assert module.net.w.item() == pytest.approx(1.0 - 0.1 * (0.6 + 0.9 * 0.6))


# ---- the LR schedule over a real fit --------------------------------------------------------------


class _LRLog(L.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("budget", [{"max_steps": 12}, {"max_steps": -1, "max_epochs": 3}])
@pytest.mark.parametrize("kind", ["poly", "cosine"])
def test_schedule_shape_over_a_real_fit(budget: dict[str, int], kind: str) -> None:
    """4 batches per epoch: a 12-step budget and a 3-epoch budget give the same 12-step schedule
    with 2 warm-up steps; the LR reaches 0 only at the end."""
    lr, warm, total = 0.2, 2, 12
    module = _module(optimizer="sgd", lr=lr, scheduler=kind, warmup_steps=warm, max_steps=budget["max_steps"])
    log = _LRLog()
    trainer = _trainer(callbacks=[log], limit_val_batches=0, **budget)
    trainer.fit(module, DataLoader(_Patches(8), batch_size=2))
    assert len(log.lrs) == total
    for step, got in enumerate(log.lrs):
        if step < warm:
            want = lr * (step + 1) / warm
        else:
            t = (step - warm) / (total - warm)
            want = lr * ((1 - t) ** 0.9 if kind == "poly" else 0.5 * (1 + math.cos(math.pi * t)))
        assert got == pytest.approx(want, rel=1e-6), (step, got, want)
    assert module.schedule_steps == total
    assert log.lrs[-1] > 0  # not dead after step 2 (the epoch-budget defect)


# ---- validation Dice: the records' rules ----------------------------------------------------------


class _Cases(Dataset):
    """Whole cases ``image (1, H, W)``, ``label (1, H, W)``, optional ``fov``."""

    def __init__(self, labels: list[torch.Tensor], fovs: list[torch.Tensor] | None = None) -> None:
        self.labels, self.fovs = labels, fovs

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {"image": torch.zeros(1, 4, 4), "label": self.labels[i][None].long(), "case_id": f"c{i}"}
        if self.fovs is not None:
            item["fov"] = self.fovs[i][None]
        return item


def _logits_for(pred: torch.Tensor) -> torch.Tensor:
    """``(1, 2, H, W)`` logits whose argmax is ``pred (H, W)``."""
    return torch.stack([1 - pred.float(), pred.float()])[None] * 4 - 2


def _val_dice(
    preds: list[torch.Tensor], labels: list[torch.Tensor], fovs: list[torch.Tensor] | None = None
) -> float:
    net = _Constant([_logits_for(p) for p in preds])
    module = SegmentationModule(net, _MSE(), num_classes=2, roi_size=(4, 4))
    out = _trainer().validate(module, DataLoader(_Cases(labels, fovs), batch_size=1), verbose=False)
    return out[0]["val_dice"]


def test_val_dice_leaves_empty_cases_out_instead_of_counting_them_as_one() -> None:
    empty = torch.zeros(4, 4, dtype=torch.long)
    label = torch.zeros(4, 4, dtype=torch.long)
    label[0, :] = 1  # 4 foreground pixels
    pred = torch.zeros(4, 4, dtype=torch.long)
    pred[0, :2] = 1  # 2 of them predicted: Dice = 2*2 / (2 + 4) = 2/3
    value = _val_dice([empty, pred], [empty, label])
    assert value == pytest.approx(2 / 3)  # empty-vs-empty is NaN and left out, not 1 -> (1 + 2/3) / 2


def test_val_dice_is_the_mean_over_cases_not_pooled_voxels() -> None:
    a_label = torch.zeros(4, 4, dtype=torch.long)
    a_label[0, 0] = 1
    a_pred = torch.zeros(4, 4, dtype=torch.long)  # missed: Dice 0
    b = torch.ones(4, 4, dtype=torch.long)  # perfect: Dice 1
    assert _val_dice([a_pred, b], [a_label, b]) == pytest.approx(0.5)


def test_val_dice_applies_the_field_of_view_to_prediction_and_truth() -> None:
    label = torch.zeros(4, 4, dtype=torch.long)
    label[:, 0] = 1
    pred = label.clone()
    pred[:, 3] = 1  # false positives, all outside the FOV
    label_outside = label.clone()
    label_outside[3, 2] = 1  # a missed pixel, outside the FOV
    fov = torch.ones(4, 4, dtype=torch.bool)
    fov[:, 2:] = False
    assert _val_dice([pred], [label_outside], [fov]) == pytest.approx(1.0)
    # without the FOV the same maps score 2*4 / (8 + 5)
    assert _val_dice([pred], [label_outside]) == pytest.approx(8 / 13)


class _Diverging(nn.Module):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.sum() * float("nan")


def test_a_diverged_loss_stops_the_fit_naming_the_step() -> None:
    module = SegmentationModule(_Constant(), _Diverging(), num_classes=2, roi_size=(4, 4), max_steps=5)
    with pytest.raises(FloatingPointError, match="training loss became nan at step 0"):
        _trainer(max_steps=5, limit_val_batches=0).fit(module, DataLoader(_Patches(8), batch_size=2))
