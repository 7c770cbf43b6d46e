"""ParaTransCNN (models/paratranscnn.py): runs in 2D and 3D, learns, and has two parallel encoders."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import ChannelSELayer, TransformerBlock

import models.paratranscnn  # noqa: F401  (registers)
from models import count_parameters, create_model
from tests.models.zoo_checks import (
    SMALL_INPUTS,
    check_small_forward_backward,
    small_model,
    train_dice,
    vessel_sample,
)

NAME = "paratranscnn"


@pytest.mark.parametrize(("spatial_dims", "batch", "shape"), SMALL_INPUTS)
def test_forward_backward_small(spatial_dims: int, batch: int, shape: tuple[int, ...]) -> None:
    # MONAI's TransformerBlock builds norm_cross_attn even without cross-attention
    check_small_forward_backward(
        NAME, spatial_dims, batch, shape, skip=lambda name: "norm_cross_attn" in name
    )


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    assert train_dice(small_model(NAME, 2), *vessel_sample(), steps=40, lr=1e-2) > 0.9


def test_both_encoders_run_in_parallel_on_the_image_and_meet_in_se_fusion() -> None:
    torch.manual_seed(0)
    net = small_model(NAME, 2).eval()
    x = torch.randn(1, 1, 64, 64)
    cnn = [f.shape[-1] for f in net.encoder(x)]
    assert cnn == [32, 16, 8, 4]  # ResNet without the stem max-pool: strides 2, 4, 8, 16
    tokens, vit = x, []
    for stage in net.transformer:  # the transformer branch starts from the image, not from the CNN
        tokens = stage(tokens)
        vit.append(tokens.shape[-1])
    assert vit == [16, 8, 4]
    assert net.transformer[0].embed.in_channels == 1
    assert all(isinstance(b, TransformerBlock) for s in net.transformer for b in s.blocks)
    # channel attention on the concatenated branches at strides 4, 8, 16
    assert all(isinstance(f, ChannelSELayer) for f in net.fusion)
    seen = []
    hooks = [f.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[1])) for f in net.fusion]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    assert seen == [16 + 16, 32 + 32, 64 + 64]  # transformer width + ResNet width per stride


def test_paper_size_branches() -> None:
    with torch.device("meta"):  # count and inspect without allocating the weights
        net = create_model(NAME, spatial_dims=2, in_channels=3, out_channels=9)
    # torchvision's resnet34 has 21,797,672 parameters, 513,000 of them in its 1000-class fc.
    assert count_parameters(net.encoder) == 21_797_672 - 513_000
    assert [len(s.blocks) for s in net.transformer] == [3, 3, 3]
    assert [s.embed.out_channels for s in net.transformer] == [320, 640, 1280]
    assert [s.embed.stride[0] for s in net.transformer] == [4, 2, 2]
    assert net.transformer[0].blocks[0].attn.num_heads == 8
    # the decoder's 3×3 convs on 1792 channels dominate: 245.48 M in all for 9 classes
    assert abs(count_parameters(net) - 245.48e6) < 0.01e6
