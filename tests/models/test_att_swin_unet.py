"""Attention Swin U-Net (models/att_swin_unet.py): runs, learns, and re-uses the encoder's attention."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets.swin_unetr import WindowAttention

import models.att_swin_unet  # noqa: F401  (registers)
from models import count_parameters, create_model
from models.att_swin_unet import ContextWindowAttention
from tests.models.zoo_checks import (
    SMALL_INPUTS,
    check_small_forward_backward,
    small_model,
    train_dice,
    vessel_sample,
)

NAME = "att_swin_unet"


@pytest.mark.parametrize(("spatial_dims", "batch", "shape"), SMALL_INPUTS)
def test_forward_backward_small(spatial_dims: int, batch: int, shape: tuple[int, ...]) -> None:
    # A 32-voxel input leaves one token at the bottleneck: its position bias cancels in softmax.
    # drop_path=0: stochastic depth would drop whole blocks of batch 1.
    check_small_forward_backward(
        NAME,
        spatial_dims,
        batch,
        shape,
        skip=lambda name: name.startswith("encoder.3.") and "relative_position_bias_table" in name,
        drop_path=0.0,
    )


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    assert train_dice(small_model(NAME, 2), *vessel_sample(), steps=80, lr=1e-2) > 0.9


def test_window_attention_adds_the_context_weights() -> None:
    # Without context it is MONAI's WindowAttention; with context C the output grows by proj(C v).
    torch.manual_seed(0)
    ours = ContextWindowAttention(dim=8, num_heads=2, window_size=(4, 4))
    ref = WindowAttention(dim=8, num_heads=2, window_size=(4, 4), qkv_bias=True)
    torch.nn.init.normal_(ours.relative_position_bias_table)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 16, 8)
    torch.testing.assert_close(ours(x, None), ref(x, None))
    context = torch.rand(3, 2, 16, 16)
    ours.context = context
    v = ours.qkv(x).reshape(3, 16, 3, 2, 4)[:, :, 2].transpose(1, 2)  # (B, heads, N, head_dim)
    extra = (context @ v).transpose(1, 2).reshape(3, 16, 8) @ ours.proj.weight.T
    torch.testing.assert_close(ours(x, None), ref(x, None) + extra)


def test_decoder_blocks_receive_the_encoder_attention_of_their_level() -> None:
    torch.manual_seed(0)
    net = small_model(NAME, 2).eval()
    given: dict[tuple[int, int], torch.Tensor | None] = {}
    made: dict[tuple[int, int], torch.Tensor | None] = {}
    handles = []
    for level, layer in enumerate(net.decoder):
        for j, block in enumerate(layer.blocks):
            pre = lambda m, args, key=(level, j): given.__setitem__(key, m.context)  # noqa: E731
            handles.append(block.attn.register_forward_pre_hook(pre))
    for level, layer in enumerate(net.encoder):
        for j, block in enumerate(layer.blocks):
            post = lambda m, args, out, key=(level, j): made.__setitem__(key, m.weights)  # noqa: E731
            handles.append(block.attn.register_forward_hook(post))
    with torch.no_grad():
        net(torch.randn(1, 1, 64, 64))
    for h in handles:
        h.remove()
    assert set(given) == {(i, j) for i in range(3) for j in range(2)}
    for key, ctx in given.items():
        assert ctx is not None and ctx is made[key], key  # same level, same block index
        torch.testing.assert_close(ctx.sum(-1), torch.ones_like(ctx.sum(-1)))  # softmax rows
    assert all(b.attn.context is None and b.attn.weights is None for lay in net.decoder for b in lay.blocks)
    # The attention changes the output: the ablation without it differs with the same weights.
    plain = small_model(NAME, 2, cross_contextual=False).eval()
    plain.load_state_dict(net.state_dict())
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert (net(x) - plain(x)).abs().max() > 1e-3


def test_paper_size_is_swin_tiny_with_mirrored_decoder() -> None:
    net = create_model(NAME, spatial_dims=2, in_channels=3, out_channels=9)
    assert [len(layer.blocks) for layer in net.encoder] == [2, 2, 6, 2]
    assert [len(layer.blocks) for layer in net.decoder] == [2, 2, 6]
    assert [layer.blocks[0].attn.num_heads for layer in net.encoder] == [3, 6, 12, 24]
    assert net.encoder[0].blocks[0].window_size == (7, 7) and net.encoder[0].blocks[1].shift_size == (3, 3)
    # 224×224 RGB, 9 Synapse classes: 41.38 M (Swin-T encoder + decoder with the same depths).
    assert abs(count_parameters(net) - 41.38e6) < 0.01e6
