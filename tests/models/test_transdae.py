"""TransDAE (models/transdae.py): runs in 2D and 3D, learns, and has its two attention pathways."""

from __future__ import annotations

import pytest
import torch

import models.transdae  # noqa: F401  (registers)
from models import count_parameters, create_model
from models.transdae import EfficientChannelAttention, SpatialReductionAttention
from tests.models.zoo_checks import (
    SMALL_INPUTS,
    check_small_forward_backward,
    small_model,
    train_dice,
    vessel_sample,
)

NAME = "transdae"


@pytest.mark.parametrize(("spatial_dims", "batch", "shape"), SMALL_INPUTS)
def test_forward_backward_small(spatial_dims: int, batch: int, shape: tuple[int, ...]) -> None:
    check_small_forward_backward(NAME, spatial_dims, batch, shape)


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    assert train_dice(small_model(NAME, 2), *vessel_sample(), steps=60, lr=1e-2) > 0.9


def test_input_size_not_divisible_is_an_error() -> None:
    with pytest.raises(ValueError, match="not divisible by 16"):
        small_model(NAME, 2)(torch.zeros(1, 1, 40, 32))


@pytest.mark.parametrize("ratio", [1, 2])
def test_spatial_pathway_is_multihead_attention_on_reduced_keys(ratio: int) -> None:
    # Reference: torch's nn.MultiheadAttention with the same weights, keys/values = reduced map.
    torch.manual_seed(0)
    ours = SpatialReductionAttention(spatial_dims=2, dim=8, heads=2, ratio=ratio)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.kv.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.kv.bias]))
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 8, 8, 8)
    kv = x if ratio == 1 else ours.reduce(x.movedim(-1, 1)).movedim(1, -1)
    kv = ours.norm(kv.reshape(2, -1, 8))
    expected, _ = ref(x.reshape(2, -1, 8), kv, kv)
    torch.testing.assert_close(ours(x), expected.reshape(2, 8, 8, 8))
    assert kv.shape[1] == 64 // ratio**2


def test_channel_pathway_is_efficient_attention() -> None:
    # Shen et al. eq. (2): E(Q, K, V) = ρ_q(Q) (ρ_k(K)ᵀ V), ρ_q softmax over channels, ρ_k over tokens,
    # written here as explicit per-token sums; the output is linear in the token count.
    torch.manual_seed(0)
    ours = EfficientChannelAttention(dim=6, heads=1)
    x = torch.randn(1, 5, 4, 6)
    q, k, v = ours.qkv(x.reshape(1, 20, 6)).chunk(3, dim=-1)
    q, k = q.softmax(-1), k.softmax(1)
    context = sum(k[0, n][:, None] * v[0, n][None, :] for n in range(20))  # (d_k, d_v)
    expected = ours.proj(q[0] @ context)
    torch.testing.assert_close(ours(x).reshape(20, 6), expected)
    # every output token depends on every input token (global), through a 6×6 context only
    x.requires_grad_(True)
    ours(x)[0, 0, 0].sum().backward()
    assert (x.grad.abs().sum(-1) > 0).all()


def test_blocks_skips_and_paper_size() -> None:
    with torch.device("meta"):  # count and inspect without allocating the weights
        net = create_model(NAME, spatial_dims=2, in_channels=3, out_channels=9)
    block = net.encoder[0][0]
    assert isinstance(block.channel, EfficientChannelAttention)
    assert isinstance(block.spatial, SpatialReductionAttention)
    assert [s[0].spatial.ratio for s in net.encoder] == [4, 2, 1]
    assert [len(s) for s in net.encoder] == [2, 2, 2]
    assert [e.stride[0] for e in net.embeds] == [4, 2, 2] and net.embeds[0].kernel_size[0] == 7
    lka = net.skips[0].lka  # decomposed large kernel: dw 5×5, dw 7×7 dilated 3, 1×1
    assert [(c.kernel_size[0], c.dilation[0], c.groups) for c in lka] == [(5, 1, 128), (7, 3, 128), (1, 1, 1)]
    # widths 128-320-512, two blocks per level, 9 Synapse classes: 30.32 M
    assert abs(count_parameters(net) - 30.32e6) < 0.01e6
