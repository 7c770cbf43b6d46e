"""STU-Net: forward/backward at the small size, the paper's four sizes, deep supervision, overfit."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import UnetResBlock

import models.stu_net  # noqa: F401  (registers)
from models import count_parameters, create_model
from tests.models.zoo_checks import assert_gradients, forward_backward, small_model, train_dice, vessel_sample

# STU-Net paper, Table 1 (and the official README): parameters in millions for 1 input channel
# and the 105 TotalSegmentator classes (104 structures + background).
PAPER_PARAMS_M = {"S": 14.60, "B": 58.26, "L": 440.30, "H": 1457.33}
# segbench uses MONAI's UnetResBlock: bias-free convolutions and a normalised shortcut, where
# the paper's block has conv biases and a bare 1x1 shortcut; that moves the count by < 0.1 %.
PARAM_RTOL = 0.001


@pytest.mark.parametrize(("spatial_dims", "shape", "batch"), [(2, (32, 32), 2), (3, (32, 32, 32), 1)])
def test_forward_backward_small(spatial_dims: int, shape: tuple[int, ...], batch: int) -> None:
    torch.manual_seed(0)
    net = small_model("stu_net", spatial_dims).train()
    x, out = forward_backward(net, batch, shape, aux_label=True)
    # side outputs, finest first, at the decoder stages' resolutions (small strides 2, 2, 2, 1, 1)
    assert [a.shape[2:] for a in out["aux"]] == [torch.Size(s // k for s in shape) for k in (2, 4, 8, 8)]
    coarsest = {id(p) for p in net.heads[0].parameters()}  # weight 0 in nnU-Net's deep supervision
    assert all(p.grad is None for p in net.heads[0].parameters())
    assert_gradients(net, skip=lambda name: id(net.get_parameter(name)) in coarsest)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (batch, 2, *shape)


def test_input_sizes() -> None:
    net = small_model("stu_net", 2).train()
    assert net(torch.randn(1, 1, 48, 16))["logits"].shape == (1, 2, 48, 16)
    assert net.eval()(torch.randn(1, 1, 20, 36)).shape == (1, 2, 20, 36)  # padded, cropped back
    with pytest.raises(ValueError, match="one bottleneck voxel"):
        small_model("stu_net", 2, strides=(2, 2, 2, 2, 2)).train()(torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize("size", sorted(PAPER_PARAMS_M))
def test_paper_sizes_parameter_count(size: str) -> None:
    with torch.device("meta"):  # no memory for the 1.46 B weights of STU-Net-H
        net = create_model("stu_net", spatial_dims=3, in_channels=1, out_channels=105, size=size)
    millions = count_parameters(net) / 1e6
    assert millions == pytest.approx(PAPER_PARAMS_M[size], rel=PARAM_RTOL)


def test_default_is_base_and_scaling_is_width_and_depth() -> None:
    with torch.device("meta"):
        default = create_model("stu_net", spatial_dims=3, in_channels=1, out_channels=105)
        large = create_model("stu_net", spatial_dims=3, in_channels=1, out_channels=105, size="L")
    assert count_parameters(default) / 1e6 == pytest.approx(PAPER_PARAMS_M["B"], rel=PARAM_RTOL)
    blocks = [sum(isinstance(m, UnetResBlock) for m in stage.modules()) for stage in large.encoder]
    assert blocks == [2] * 6  # STU-Net-L: depth 2 in every stage
    assert [stage[0].conv1.conv.out_channels for stage in large.encoder] == [64, 128, 256, 512, 1024, 1024]
    assert [stage[0].conv1.conv.stride[0] for stage in large.encoder] == [1, 2, 2, 2, 2, 2]
    # upsampling is weight-free interpolation plus a 1x1 convolution, no transposed convolution
    assert not any(isinstance(m, torch.nn.ConvTranspose3d) for m in large.modules())
    for up in large.upsample:  # a 1x1 conv commutes with nearest upsampling: conv-then-resize
        assert [type(m) for m in up.children()] == [torch.nn.Conv3d, torch.nn.Upsample]
        assert up.preconv.kernel_size == (1, 1, 1) and up.upsample_non_trainable.mode == "nearest"


def test_bad_size_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="size must be one of"):
        create_model("stu_net", spatial_dims=3, in_channels=1, out_channels=2, size="XL")


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    x, y = vessel_sample()
    dice = train_dice(small_model("stu_net", 2).train(), x, y, steps=30, lr=1e-2)
    assert dice > 0.9, f"training Dice {dice:.3f}"
