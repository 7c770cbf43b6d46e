"""D-Former (models/dformer.py): runs in 2D and 3D, learns, and attends locally and dilated."""

from __future__ import annotations

import pytest
import torch

import models.dformer  # noqa: F401  (registers)
from models import count_parameters, create_model
from models.dformer import DilatedTransformerBlock
from models.layers.tokens import group_tokens, ungroup_tokens
from tests.models.zoo_checks import check_small_forward_backward, small_model, train_dice, vessel_sample

NAME = "dformer"


@pytest.mark.parametrize(
    ("spatial_dims", "batch", "shape"), [(2, 2, (32, 32)), (3, 1, (32, 32, 32)), (2, 1, (48, 16))]
)
def test_forward_backward_small(spatial_dims: int, batch: int, shape: tuple[int, ...]) -> None:
    check_small_forward_backward(NAME, spatial_dims, batch, shape)


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    assert train_dice(small_model(NAME, 2), *vessel_sample(), steps=40, lr=3e-3) > 0.9


def test_local_and_dilated_groups_by_hand() -> None:
    # An 4×4 grid of token ids, groups of 2×2: local = windows, dilated = tokens 2 apart.
    x = torch.arange(16.0).reshape(1, 4, 4, 1)
    local = group_tokens(x, (2, 2), dilated=False)[..., 0]
    dilated = group_tokens(x, (2, 2), dilated=True)[..., 0]
    assert local.tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    assert dilated.tolist() == [[0, 2, 8, 10], [1, 3, 9, 11], [4, 6, 12, 14], [5, 7, 13, 15]]
    for flag in (False, True):
        y = torch.randn(2, 4, 8, 6, 3)
        back = ungroup_tokens(group_tokens(y, (2, 4, 3), flag), (2, 4, 3), flag, 2, (4, 8, 6))
        torch.testing.assert_close(back, y)


@pytest.mark.parametrize("dilated", [False, True])
def test_attention_reaches_exactly_its_group(dilated: bool) -> None:
    # The gradient of one output token reaches only the tokens of its group (window / dilated grid).
    torch.manual_seed(0)
    block = DilatedTransformerBlock(dim=8, num_heads=2, group_size=(2, 2), dilated=dilated)
    x = torch.randn(1, 6, 6, 8, requires_grad=True)  # 6×6 in groups of 2×2: no padding
    block(x)[0, 1, 1].sum().backward()
    reached = (x.grad[0].abs().sum(-1) > 0).nonzero().tolist()
    expected = [[0, 0], [0, 1], [1, 0], [1, 1]] if not dilated else [[1, 1], [1, 4], [4, 1], [4, 4]]
    assert reached == expected


def test_padded_tokens_are_masked_out() -> None:
    # A 3×3 map in dilated groups of 2×2 is padded to 4×4. Token (1, 1) groups with the padded
    # (1, 3), (3, 1), (3, 3) only, token (0, 1) with (2, 1) and two padded ones: with the padding
    # masked out, their outputs equal the block applied to the real tokens of the group alone.
    torch.manual_seed(0)
    block = DilatedTransformerBlock(dim=8, num_heads=2, group_size=(2, 2), dilated=True)
    x = torch.randn(1, 3, 3, 8)
    with torch.no_grad():
        out = block(x)
        alone = block(x[:, 1:2, 1:2])
        pair = block(x[:, 0::2, 1:2])  # tokens (0, 1) and (2, 1) as a 2×1 map
    torch.testing.assert_close(out[0, 1, 1], alone[0, 0, 0])
    torch.testing.assert_close(out[0, 0, 1], pair[0, 0, 0])
    torch.testing.assert_close(out[0, 2, 1], pair[0, 1, 0])


def test_stages_alternate_local_and_dilated_with_position_encoding() -> None:
    with torch.device("meta"):  # count and inspect without allocating the weights
        net = create_model(NAME, spatial_dims=3, in_channels=1, out_channels=14)
    for stage in [*net.encoder, *net.decoder]:
        assert [b.dilated for b in stage.blocks] == [i % 2 == 1 for i in range(len(stage.blocks))]
        assert stage.dpe.groups == stage.dpe.in_channels  # depth-wise dynamic position encoding
        assert all(b.group_size == (2, 8, 8) for b in stage.blocks)
    assert [len(s.blocks) for s in net.encoder] == [2, 2, 6, 2]
    assert tuple(net.embed.kernel_size) == (2, 4, 4)


def test_paper_size_parameter_count() -> None:
    # embed 96, depths 2-2-6-2, heads 3-6-12-24, 14 Synapse classes (no deep-supervision heads).
    with torch.device("meta"):  # count and inspect without allocating the weights
        net = create_model(NAME, spatial_dims=3, in_channels=1, out_channels=14)
    assert abs(count_parameters(net) - 44.65e6) < 0.01e6
