"""Dice / IoU against hand counts and MONAI, in every input form."""

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_iou

from bench.metrics import DiceAccumulator, dice, iou


def test_hand_computed_2d():
    p = np.array([[1, 1, 0], [0, 0, 0]])
    g = np.array([[1, 0, 0], [1, 0, 0]])
    assert float(dice(p, g)) == pytest.approx(2 * 1 / (2 + 2))
    assert float(iou(p, g)) == pytest.approx(1 / 3)


@pytest.mark.parametrize("shape", [(2, 3, 17, 19), (1, 2, 9, 8, 7)])
def test_batched_matches_monai(shape):
    gen = torch.Generator().manual_seed(0)
    p = (torch.rand(shape, generator=gen) < 0.4).float()
    g = (torch.rand(shape, generator=gen) < 0.4).float()
    ours = dice(p, g)
    assert isinstance(ours, torch.Tensor) and ours.shape == shape[:2]
    torch.testing.assert_close(ours.float(), compute_dice(p, g, include_background=True))
    torch.testing.assert_close(iou(p, g).float(), compute_iou(p, g, include_background=True))


def test_batched_int_onehot_like_lightning_module():
    labels = torch.randint(0, 3, (2, 12, 12))
    onehot = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1)
    out = dice(onehot[:, 1:], onehot[:, 1:])
    assert out.shape == (2, 2) and torch.all(out == 1)


def test_empty_rule_nan_both_zero_one():
    z = np.zeros((5, 5), bool)
    o = z.copy()
    o[2, 2] = True
    assert np.isnan(dice(z, z)) and np.isnan(iou(z, z))
    assert float(dice(z, o)) == 0.0 and float(dice(o, z)) == 0.0
    batch = torch.zeros(1, 2, 4, 4)
    batch[0, 1, 0, 0] = 1
    out = dice(batch, batch)
    assert torch.isnan(out[0, 0]) and out[0, 1] == 1


def test_label_maps_per_class():
    rng = np.random.default_rng(3)
    p, g = rng.integers(0, 4, (30, 30)), rng.integers(0, 4, (30, 30))
    out = dice(p, g, num_classes=4, include_background=False)
    assert out.shape == (3,)
    for c in range(1, 4):
        pc, gc = p == c, g == c
        assert out[c - 1] == pytest.approx(2 * (pc & gc).sum() / (pc.sum() + gc.sum()))
    assert dice(p, g, num_classes=4).shape == (4,)


def test_accumulator_uses_same_function():
    gen = torch.Generator().manual_seed(1)
    acc = DiceAccumulator()
    batches = [
        (torch.rand(2, 2, 8, 8, generator=gen) < 0.5, torch.rand(2, 2, 8, 8, generator=gen) < 0.5)
        for _ in range(3)
    ]
    for p, g in batches:
        acc.update(p, g)
    expected = torch.cat([dice(p, g) for p, g in batches])
    torch.testing.assert_close(acc.compute(), expected, equal_nan=True)


@pytest.mark.parametrize(
    ("p", "g", "match"),
    [
        (np.full((3, 3), 0.5), np.zeros((3, 3)), "preds"),
        (np.zeros((3, 3)), np.full((3, 3), 2), "target"),
        (np.zeros((3, 3)), np.zeros((3, 4)), "same shape"),
        (np.full((3, 3), np.nan), np.zeros((3, 3)), "preds"),
    ],
)
def test_invalid_inputs(p, g, match):
    with pytest.raises(ValueError, match=match):
        dice(p, g)


def test_label_out_of_range():
    with pytest.raises(ValueError, match="preds"):
        dice(np.array([[0, 5]]), np.array([[0, 1]]), num_classes=2)


def test_invalid_torch_batch():
    with pytest.raises(ValueError, match="preds"):
        dice(torch.full((1, 1, 2, 2), 2), torch.zeros(1, 1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        dice(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5))
    with pytest.raises(ValueError, match="shape"):
        dice(torch.zeros(1, 1, 2, 2, 2, 2), torch.zeros(1, 1, 2, 2, 2, 2))
