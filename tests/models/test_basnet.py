"""BASNet: forward/backward, predict-refine structure, deep supervision, paper size, overfit."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets.resnet import ResNetBlock

import models.basnet  # noqa: F401  (registers)
from models import count_parameters, create_model
from tests.models.zoo_checks import assert_gradients, forward_backward, small_model, train_dice, vessel_sample

# The official BASNet checkpoint is 348.5 MB (Qin et al., U^2-Net, Pattern Recognition 2020,
# Table 3, where BASNet is compared): 348.5e6 bytes / 4 bytes per float32 weight. The saved file
# also holds BatchNorm running statistics (~0.06 M values), hence the tolerance.
PAPER_PARAMS = 348.5e6 / 4
PARAM_RTOL = 0.005


@pytest.mark.parametrize(("spatial_dims", "shape", "batch"), [(2, (32, 32), 2), (3, (16, 16, 16), 1)])
def test_forward_backward_small(spatial_dims: int, shape: tuple[int, ...], batch: int) -> None:
    torch.manual_seed(0)
    net = small_model("basnet", spatial_dims).train()
    x, out = forward_backward(net, batch, shape, aux_label=True)
    assert len(out["aux"]) == len(net.decoder) + 1  # every decoder stage + the bridge
    assert all(a.shape == out["logits"].shape for a in out["aux"])  # side outputs at full size
    assert_gradients(net)
    with torch.no_grad():
        assert net.eval()(x).shape == (batch, 2, *shape)


def test_sizes_divisible_by_16_and_others() -> None:
    net = small_model("basnet", 2).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 48, 16)).shape == (1, 2, 48, 16)
        assert net(torch.randn(1, 1, 20, 36)).shape == (1, 2, 20, 36)


def test_refinement_adds_a_residual_to_the_coarse_map() -> None:
    torch.manual_seed(0)
    net = small_model("basnet", 2).train()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out = net(x)
        coarse = out["aux"][0]  # the finest side output is the coarse map the RRM refines
        assert not torch.allclose(out["logits"], coarse)
        net.refine.outconv.weight.zero_()
        net.refine.outconv.bias.zero_()
        torch.testing.assert_close(net(x)["logits"], coarse)


def test_paper_size_structure_and_parameter_count() -> None:
    with torch.device("meta"):
        net = create_model("basnet", spatial_dims=2, in_channels=3, out_channels=1)
    assert count_parameters(net) == pytest.approx(PAPER_PARAMS, rel=PARAM_RTOL)
    blocks = [sum(isinstance(m, ResNetBlock) for m in s.modules()) for s in net.encoder.stages]
    assert blocks == [3, 4, 6, 3, 3, 3]  # ResNet-34 stages + two extra stages of 3 blocks
    assert net.encoder.stem.conv.stride == (1, 1)  # 3x3 input conv, no stride, no max-pool
    assert [c.conv.dilation for c in net.bridge] == [(2, 2)] * 3
    assert len(net.side) == 7
    assert len(net.refine.enc) == 4 and net.refine.bridge.conv.out_channels == 64


def test_overfits_one_sample_with_the_hybrid_loss() -> None:
    torch.manual_seed(0)
    x, y = vessel_sample()
    dice = train_dice(small_model("basnet", 2).train(), x, y, steps=25, lr=1e-2, loss="basnet_hybrid")
    assert dice > 0.9, f"training Dice {dice:.3f}"
