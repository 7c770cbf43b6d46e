"""ParaTransCNN (models/paratranscnn.py): runs in 2D and 3D, learns, and has two parallel encoders."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from monai.networks.blocks import ChannelSELayer, TransformerBlock

import models.paratranscnn  # noqa: F401  (registers)
from datamodules.synthetic import generate_vessels
from models.losses import create_loss
from models.registry import count_parameters, create_model, model_entry

NAME = "paratranscnn"


def _small(spatial_dims: int, **kw: Any) -> torch.nn.Module:
    size = {**model_entry(NAME).meta["small"], **kw}
    return create_model(NAME, spatial_dims=spatial_dims, in_channels=1, out_channels=2, **size)


def _train_dice(net: torch.nn.Module, steps: int, lr: float) -> float:
    """Adam on one 32×32 synthetic vessel image with Dice+CE; training-mode Dice afterwards."""
    image, label = generate_vessels((32, 32), 0, 0)
    x, y = torch.from_numpy(image)[None, None], torch.from_numpy(label)[None, None].long()
    loss_fn, opt = create_loss("dice_ce"), torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        pred = net(x).argmax(1, keepdim=True) == 1
    return float(2 * (pred & (y == 1)).sum() / (pred.sum() + (y == 1).sum()))


@pytest.mark.parametrize(
    ("spatial_dims", "batch", "shape"), [(2, 2, (32, 32)), (3, 1, (32, 32, 32)), (2, 1, (48, 80))]
)
def test_forward_backward_small(spatial_dims: int, batch: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = _small(spatial_dims)
    out = net(torch.randn(batch, 1, *shape))
    assert out.shape == (batch, 2, *shape)
    out.square().mean().backward()
    for name, p in net.named_parameters():
        if "norm_cross_attn" in name:  # MONAI's TransformerBlock builds it even without cross-attention
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    assert _train_dice(_small(2), steps=40, lr=1e-2) > 0.9


def test_both_encoders_run_in_parallel_on_the_image_and_meet_in_se_fusion() -> None:
    torch.manual_seed(0)
    net = _small(2).eval()
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
