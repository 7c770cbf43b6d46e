"""Checks shared by the zoo's model tests: the small build, forward + backward, overfitting one sample.

Import as ``from tests.models.zoo_checks import ...`` (the repository root is on ``pythonpath``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from datamodules.synthetic import generate_vessels
from models import SegmentationModule, create_loss, create_model, model_entry
from models.deep_supervision import supervised_loss
from models.registry import loss_targets

# (spatial_dims, batch, shape) for forward + backward: 2D with a batch of 2, 3D, and a 2D non-square input
SMALL_INPUTS = [(2, 2, (32, 32)), (3, 1, (32, 32, 32)), (2, 1, (48, 80))]


def small_model(name: str, spatial_dims: int, **kw: Any) -> nn.Module:
    """The registered ``small`` size of ``name`` (``kw`` overrides it), 1 input channel, 2 classes."""
    size = {**model_entry(name).meta["small"], **kw}
    return create_model(name, spatial_dims=spatial_dims, in_channels=1, out_channels=2, **size)


def logits_of(out: torch.Tensor | dict[str, Any]) -> torch.Tensor:
    """The logits of a net's output: the tensor itself or its ``"logits"`` entry."""
    return out["logits"] if isinstance(out, dict) else out


def forward_backward(
    net: nn.Module, batch: int, shape: Sequence[int], aux_label: bool = False
) -> tuple[torch.Tensor, torch.Tensor | dict[str, Any]]:
    """Runs ``x (batch, 1, *shape)`` of ``randn`` through ``net`` and backpropagates ``mean(logits²)``.

    Asserts logits ``(batch, 2, *shape)``. With ``aux_label`` a random label ``(batch, 1, *shape)``
    (30 % foreground) is drawn after ``x``; ``mean(side²)`` of every deeply supervised side output
    (registration weights) and ``net.aux_loss(out, {"label": label})`` are added.

    Returns:
        ``(x, out)``: the input and the net's output.
    """
    x = torch.randn(batch, 1, *shape)
    label = (torch.rand(batch, 1, *shape) > 0.7).long() if aux_label else None
    out = net(x)
    assert logits_of(out).shape == (batch, 2, *shape)
    loss = logits_of(out).square().mean()
    if aux_label:
        loss = supervised_loss(net, lambda logits, _: logits.square().mean(), out, label)
        if hasattr(net, "aux_loss"):
            loss = loss + net.aux_loss(out, {"label": label})
    loss.backward()
    return x, out


def assert_gradients(
    net: nn.Module, skip: Callable[[str], bool] | None = None, nonzero: bool = False
) -> None:
    """Every parameter not ``skip``-ped by name has a finite gradient (and, with ``nonzero``, not all 0)."""
    for name, p in net.named_parameters():
        if skip is not None and skip(name):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if nonzero:
            assert p.grad.abs().sum() > 0, name


def check_small_forward_backward(
    name: str,
    spatial_dims: int,
    batch: int,
    shape: Sequence[int],
    skip: Callable[[str], bool] | None = None,
    **kw: Any,
) -> None:
    """Seed 0, the small ``name`` (``kw`` overrides its size), then :func:`forward_backward`.

    Asserts logits ``(batch, 2, *shape)`` and a finite, nonzero gradient for each parameter not ``skip``-ped.
    """
    torch.manual_seed(0)
    net = small_model(name, spatial_dims, **kw)
    forward_backward(net, batch, shape)
    assert_gradients(net, skip=skip, nonzero=True)


def vessel_sample(zoom: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The 32×32 synthetic vessel case (seed 0, index 0): ``x (1, 1, H, W)`` float, ``y (1, 1, H, W)`` int64.

    ``zoom`` shows it ``zoom`` times larger (nearest neighbour, same vessels).
    """
    image, label = generate_vessels((32, 32), 0, 0)
    x, y = torch.from_numpy(image)[None, None], torch.from_numpy(label)[None, None].long()
    for dim in (2, 3):
        x, y = x.repeat_interleave(zoom, dim), y.repeat_interleave(zoom, dim)
    return x, y


def foreground_dice(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Dice of class 1: ``logits (B, C, *S)``, ``target (B, 1, *S)`` int64 -> a float in [0, 1]."""
    pred, true = logits.argmax(1, keepdim=True) == 1, target == 1
    return float(2 * (pred & true).sum() / (pred.sum() + true.sum()))


def train_dice(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float,
    loss: str = "dice_ce",
    predict_in_eval: bool = False,
) -> float:
    """Adam on the one case ``(x, y)`` for ``steps`` steps; the Dice of class 1 on it afterwards.

    The loss is the SegmentationModule's training loss with ``create_loss(loss)``: on the logits
    and any deeply supervised side outputs, plus the net's ``aux_loss``; a net with
    ``takes_target`` gets ``net(x, y)``. The Dice is in training mode, as trained, unless
    ``predict_in_eval``.
    """
    module = SegmentationModule(
        net, create_loss(loss), num_classes=2, roi_size=x.shape[2:], loss_targets=loss_targets(loss)
    )
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        module.training_loss({"image": x, "label": y}).backward()
        opt.step()
    if predict_in_eval:
        net.eval()
    with torch.no_grad():
        return foreground_dice(logits_of(net(x)), y)
