"""DeepLabV3+ (models/deeplabv3plus.py): runs in 2D and 3D, learns, and has the paper's structure."""

from __future__ import annotations

import pytest
import torch

import models.deeplabv3plus  # noqa: F401  (registers)
from models import count_parameters, create_model
from models.layers.resnet import ResNetEncoder
from tests.models.zoo_checks import (
    SMALL_INPUTS,
    check_small_forward_backward,
    small_model,
    train_dice,
    vessel_sample,
)

NAME = "deeplabv3plus"


@pytest.mark.parametrize(("spatial_dims", "batch", "shape"), SMALL_INPUTS)
def test_forward_backward_small(spatial_dims: int, batch: int, shape: tuple[int, ...]) -> None:
    check_small_forward_backward(NAME, spatial_dims, batch, shape)


def test_overfits_one_sample() -> None:
    # The decoder predicts at stride 4 and upsamples bilinearly (§3.2), so the 1-pixel vessels of
    # the 32×32 sample cap training Dice near 0.65; shown at 4× zoom (128×128) it learns them.
    torch.manual_seed(0)
    assert train_dice(small_model(NAME, 2), *vessel_sample(zoom=4), steps=60, lr=1e-2) > 0.9


def test_aspp_rates_output_stride_and_decoder_follow_the_paper() -> None:
    with torch.device("meta"):  # count and inspect without allocating the weights
        net = create_model(NAME, spatial_dims=2, in_channels=3, out_channels=21)
    # §4.1: output stride 16, ASPP = 1×1 + 3×3 at rates 6, 12, 18 + image pooling, 256 channels.
    assert net.encoder.strides == [4, 8, 16, 16]
    assert [b.conv.dilation[0] for b in net.aspp.branches] == [1, 6, 12, 18]
    assert [b.conv.kernel_size[0] for b in net.aspp.branches] == [1, 3, 3, 3]
    assert net.aspp.project[0].conv.in_channels == 5 * 256
    # The last stage trades stride for dilation 2 with multi-grid (1, 2, 4).
    last = [b.body[1].conv for b in net.encoder.stages[3]]
    assert [(c.stride[0], c.dilation[0]) for c in last] == [(1, 2), (1, 4), (1, 8)]
    # §3.2 decoder: stride-4 features reduced to 48 channels by a 1×1 conv, two 3×3 convs of 256.
    assert (net.reduce.conv.in_channels, net.reduce.conv.out_channels) == (256, 48)
    assert [c.conv.kernel_size[0] for c in net.decoder] == [3, 3]
    assert [c.conv.out_channels for c in net.decoder] == [256, 256]


def test_deep_features_keep_output_stride() -> None:
    net = small_model(NAME, 2)
    feats = net.encoder(torch.zeros(1, 1, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 4]


def test_paper_size_encoder_is_resnet101() -> None:
    # torchvision's resnet101 has 44,549,160 parameters; without its 1000-class fc layer
    # (2048 * 1000 + 1000) that is 42,500,160, the count of the encoder here on RGB input.
    with torch.device("meta"):  # count and inspect without allocating the weights
        net = create_model(NAME, spatial_dims=2, in_channels=3, out_channels=21)
    assert count_parameters(net.encoder) == 44_549_160 - 2_049_000
    assert [len(s) for s in net.encoder.stages] == [3, 4, 23, 3]
    # ASPP + decoder + head add 16.8 M: 59.34 M in all for 21 classes (PASCAL VOC).
    assert abs(count_parameters(net) - 59.34e6) < 0.01e6


@pytest.mark.parametrize(
    ("layers", "bottleneck", "groups", "width", "expected"),
    [
        ((3, 4, 6, 3), False, 1, 64, 21_797_672),  # torchvision resnet34
        ((3, 4, 6, 3), True, 32, 4, 25_028_904),  # torchvision resnext50_32x4d
        ((3, 4, 23, 3), True, 32, 8, 88_791_336),  # torchvision resnext101_32x8d
    ],
)
def test_shared_encoder_matches_torchvision_parameter_counts(
    layers: tuple[int, ...], bottleneck: bool, groups: int, width: int, expected: int
) -> None:
    # torchvision's counts include a 1000-class fc layer: (512 or 2048) * 1000 + 1000 parameters.
    with torch.device("meta"):
        enc = ResNetEncoder(2, 3, layers, bottleneck, 64, 32, (1,), groups=groups, width_per_group=width)
    fc = (2048 if bottleneck else 512) * 1000 + 1000
    assert count_parameters(enc) + fc == expected
