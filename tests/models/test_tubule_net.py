"""Tubule-sensitive U-Net (models/tubule_net.py): runs, learns, recalibrates and distils attention."""

from __future__ import annotations

import pytest
import torch

import models.tubule_net  # noqa: F401  (registers)
from models import count_parameters, create_model
from models.tubule_net import FeatureRecalibration, attention_map
from tests.models.zoo_checks import SMALL_INPUTS, assert_gradients, small_model, train_dice, vessel_sample

NAME = "tubule_net"


@pytest.mark.parametrize(("spatial_dims", "batch", "shape"), SMALL_INPUTS)
def test_forward_backward_small(spatial_dims: int, batch: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = small_model(NAME, spatial_dims)
    out = net(torch.randn(batch, 1, *shape))
    assert out["logits"].shape == (batch, 2, *shape)
    assert [a.shape[2:] for a in out["aux"]] == [tuple(s // 2**k for s in shape) for k in (3, 2, 1, 0)]
    (out["logits"].square().mean() + net.aux_loss(out, {})).backward()
    assert_gradients(net, nonzero=True)


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    assert train_dice(small_model(NAME, 2), *vessel_sample(), steps=40, lr=1e-2) > 0.9


def test_feature_recalibration_projects_along_each_axis() -> None:
    # By hand for a (1, 1, 2, 3) map: mean over W gives a column profile, mean over H a row one.
    x = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])
    rows = torch.tensor([2.0, 5.0])[:, None]  # mean over W per row
    cols = torch.tensor([2.5, 3.5, 4.5])[None, :]  # mean over H per column
    torch.testing.assert_close(FeatureRecalibration.project(x)[0, 0], rows + cols)
    # the weights vary with position (not one scalar per channel as in squeeze-and-excitation)
    torch.manual_seed(0)
    frm = FeatureRecalibration(3, 4)
    v = torch.randn(1, 4, 4, 5, 6)
    w = frm(v) / v
    assert w.min() > 0 and w.max() < 1 and w[0, 0].std() > 1e-4


def test_attention_distillation_pulls_coarse_maps_towards_the_next_finer_one() -> None:
    torch.manual_seed(0)
    net = small_model(NAME, 2, distill_weight=1.0)
    coarse = torch.rand(1, 1, 2, 2, requires_grad=True)
    fine = torch.rand(1, 1, 4, 4, requires_grad=True)
    loss = net.aux_loss({"aux": [coarse, fine]}, {})
    up = torch.nn.functional.interpolate(coarse, size=(4, 4), mode="bilinear", align_corners=False)
    s, t = up.flatten(1).softmax(1), fine.flatten(1).softmax(1)
    torch.testing.assert_close(loss, (s - t.detach()).square().sum())
    loss.backward()
    assert coarse.grad.abs().sum() > 0 and fine.grad is None  # the finer map is the (fixed) teacher
    same = torch.ones(1, 1, 4, 4)
    assert float(net.aux_loss({"aux": [same[..., :2, :2], same]}, {})) < 1e-12
    torch.testing.assert_close(attention_map(torch.full((1, 3, 2, 2), 2.0)), torch.full((1, 1, 2, 2), 4.0))


def test_every_block_is_recalibrated_and_ablation_switches() -> None:
    net = create_model(NAME, spatial_dims=3, in_channels=1, out_channels=2)
    blocks = [*net.encoder, *net.decoder]
    assert all(isinstance(b[-1], FeatureRecalibration) for b in blocks)
    assert [b[0].conv.out_channels for b in net.encoder] == [16, 32, 64, 128, 256]
    assert "instance" in type(net.encoder[0][0].adn.N).__name__.lower()  # IN + ReLU after each conv
    plain = create_model(NAME, spatial_dims=3, in_channels=1, out_channels=2, frm=False, distill_weight=0.0)
    assert not any(isinstance(m, FeatureRecalibration) for m in plain.modules())
    frm_params = sum(count_parameters(b[-1]) for b in blocks)
    assert count_parameters(net) - count_parameters(plain) == frm_params
    # 5.75 M parameters for 1 input channel and 2 classes (3D); recalibration adds 110 k of them
    assert abs(count_parameters(net) - 5.75e6) < 0.01e6
