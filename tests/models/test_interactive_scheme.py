"""The ``interactive`` scheme: click maps reach the network, seeded training clicks, and the test
click loop against Dice curves computed by hand."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from bench.run.callbacks import CaseMetricsCallback
from models import SegmentationModule, create_loss, create_scheme
from models.registry import scheme_entry


class _Recorder(nn.Module):
    """A 1x1 convolution from ``in_channels + 2`` channels that remembers its last input."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2, 1)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.conv(x)


class _DiskUnion(nn.Module):
    """The hand-made "model": foreground exactly where a positive click disk is (channel 1 of
    ``image (1 channel) ⊕ click maps``); negative clicks are ignored."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = x[:, 1]
        return torch.stack([torch.zeros_like(pos), 10.0 * (pos - 0.5)], dim=1) + 0 * self.dummy


def _module(net: nn.Module, roi=(32, 32), **options) -> SegmentationModule:
    torch.manual_seed(7)
    scheme = create_scheme("interactive", **options)
    return SegmentationModule(net, create_loss("dice_ce"), num_classes=2, roi_size=roi, scheme=scheme)


def _batch(label: np.ndarray, channels: int = 1) -> dict:
    lab = torch.from_numpy(label.astype(np.int64))[None, None]
    image = torch.rand(1, channels, *label.shape)
    return {"image": image, "label": lab, "case_id": ["case"]}


def _disk(shape, centre, r) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r


def test_the_registration_asks_for_two_click_channels() -> None:
    assert scheme_entry("interactive").meta["click_channels"] == 2
    assert scheme_entry("supervised").meta["click_channels"] == 0


def test_click_maps_reach_the_network_and_the_loss_is_finite() -> None:
    net = _Recorder(3)
    module = _module(net, max_iters=2)
    label = np.zeros((2, 1, 24, 24), np.int64)
    label[:, :, 6:14, 6:14] = 1
    batch = {"image": torch.rand(2, 1, 24, 24), "label": torch.from_numpy(label)}
    loss = module.training_loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    assert net.conv.weight.grad is not None and net.conv.weight.grad[:, 1:].abs().sum() > 0
    last = net.seen[-1]
    assert last.shape == (2, 3, 24, 24)
    assert torch.equal(last[:, :1], batch["image"])  # the image first, unchanged
    assert (last[:, 1].flatten(1).sum(1) > 0).all()  # every sample has at least one positive click


def _first_clicks(module, label):
    image = torch.rand(label.shape[0], 1, *label.shape[1:])
    return module.scheme.training_clicks(module, image, label)


def test_training_clicks_are_seeded_per_step_and_the_first_lie_in_object_or_background() -> None:
    label = np.zeros((3, 20, 20), bool)
    label[:, 4:12, 5:15] = True
    module = _module(_Recorder(3), max_iters=0, max_initial=5)
    a, b = _first_clicks(module, label), _first_clicks(module, label)
    assert a == b  # same seed, same step: the same clicks
    module.scheme.after_step(module)
    c = _first_clicks(module, label)
    assert c != a  # the next step draws other clicks
    other = _module(_Recorder(3), max_iters=0)
    other.scheme.seed = module.scheme.seed + 1
    assert _first_clicks(other, label) != a  # another run seed, other clicks
    n_pos = 0
    for sample, clicks in zip(label, a + c, strict=False):
        for at, positive in clicks:
            assert sample[at] == positive  # positive in the object, negative in the background
            n_pos += positive
    assert n_pos >= 3


def _loop(label: np.ndarray, fov: np.ndarray | None = None, **options) -> dict:
    module = _module(_DiskUnion(), roi=label.shape, radius=3, **options)
    module.eval()
    batch = _batch(label)
    if fov is not None:
        batch["fov"] = torch.from_numpy(fov)[None, None]
    return module, batch, module.test_step(batch, 0)


def test_the_click_loop_on_objects_the_clicks_reproduce() -> None:
    # three disks of radius 3 (29 pixels each): each click at a disk's centre recovers it exactly
    shape = (32, 32)
    label = (_disk(shape, (5, 5), 3) | _disk(shape, (5, 20), 3) | _disk(shape, (20, 12), 3)).astype(np.int64)
    assert label.sum() == 87
    _, _, out = _loop(label)
    expected = [2 * 29 / (29 + 87), 2 * 58 / (58 + 87), 1.0] + [1.0] * 17
    np.testing.assert_allclose(out["dice_per_click"], expected, rtol=1e-12)
    m = out["protocol_metrics"]
    assert m["noc85"] == 3 and m["noc90"] == 3
    assert m["dice_at_1"] == pytest.approx(0.5) and m["dice_at_3"] == 1.0 and m["dice_at_5"] == 1.0
    assert torch.equal(out["prob"].argmax(0), torch.from_numpy(label))  # after the last click


def test_the_click_loop_with_a_small_square_and_a_useless_negative_click() -> None:
    # two disks of radius 3 (29 px each) and a 3x3 square (9 px); clicking the square's centre
    # paints a 29-px disk: 20 false-positive pixels that negative clicks cannot remove here
    shape = (32, 32)
    label = (_disk(shape, (5, 5), 3) | _disk(shape, (5, 20), 3)).astype(np.int64)
    label[19:22, 11:14] = 1
    total = 67
    _, _, out = _loop(label)
    d1, d2, d3 = 2 * 29 / (29 + total), 2 * 58 / (58 + total), 2 * 67 / (87 + total)
    np.testing.assert_allclose(out["dice_per_click"], [d1, d2] + [d3] * 18, rtol=1e-12)
    m = out["protocol_metrics"]
    assert d2 > 0.9 and m["noc85"] == 2 and m["noc90"] == 2
    assert m["dice_at_1"] == pytest.approx(d1) and m["dice_at_3"] == pytest.approx(d3)
    assert m["dice_at_5"] == pytest.approx(d3)


def test_a_threshold_never_reached_costs_the_whole_budget_and_the_fov_is_respected() -> None:
    # one 9x9 square (81 px); a click paints a radius-3 disk (29 px) inside it; each next click
    # goes to the deepest point of the largest error component; Dice stays below 0.85 for long
    shape = (24, 24)
    label = np.zeros(shape, np.int64)
    label[2:11, 2:11] = 1
    fov = np.zeros(shape, bool)
    fov[:, :7] = True  # only the left 5 columns of the square are in view (45 px)
    _, _, out = _loop(label, fov=fov, max_clicks=5)
    d = out["dice_per_click"]
    assert len(d) == 5
    # click 1: in the in-view part (rows 2..10, cols 2..6; col 7 is out of view, so boundary)
    # rows 4..8 of col 4 are all 3 px from the boundary: the tie goes to the first, (4, 4)
    disk = _disk(shape, (4, 4), 3) & fov
    inside = disk & (label == 1)
    expect1 = 2 * inside.sum() / (disk.sum() + 45)
    assert d[0] == pytest.approx(expect1)
    assert all(not math.isnan(v) for v in d)


def test_the_callback_adds_the_protocol_metrics_to_the_row() -> None:
    shape = (32, 32)
    label = (_disk(shape, (5, 5), 3) | _disk(shape, (5, 20), 3) | _disk(shape, (20, 12), 3)).astype(np.int64)
    module, batch, out = _loop(label)
    cb = CaseMetricsCallback()
    trainer = SimpleNamespace(datamodule=None)
    cb.on_test_batch_end(trainer, module, out, batch, 0)
    (row,) = cb.rows
    assert row["noc85"] == 3.0 and row["noc90"] == 3.0 and row["dice_at_1"] == pytest.approx(0.5)
    assert row["dice"] == pytest.approx(1.0)  # the ordinary metrics score the last prediction
    assert "dice_per_click" not in row and len(cb.curves["case"]) == 20


def test_an_ordinary_scheme_has_no_test_protocol() -> None:
    module = SegmentationModule(
        _Recorder(1),
        create_loss("dice_ce"),
        num_classes=2,
        roi_size=(16, 16),
        scheme=create_scheme("supervised"),
    )
    out = module.test_step(_batch(np.zeros((16, 16), np.int64)), 0)
    assert "protocol_metrics" not in out and "dice_per_click" not in out


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_clicks"):
        create_scheme("interactive", max_clicks=3)
