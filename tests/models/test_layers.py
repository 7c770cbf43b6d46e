"""The shared layers (models/layers): padding, resizing, tokens and the encoders the zoo shares."""

from __future__ import annotations

import pytest
import torch

from models import create_model, model_entry
from models.layers import (
    ResNetEncoder,
    StagedEncoder,
    channels_first,
    channels_last,
    crop_to,
    from_tokens,
    pad_to_multiple,
    padding_to_multiple,
    resize_to,
    to_tokens,
)


@pytest.mark.parametrize("shape", [(5, 7), (4, 9, 3)])
def test_pad_to_a_multiple_and_crop_back(shape: tuple[int, ...]) -> None:
    x = torch.randn(2, 3, *shape)
    padded = pad_to_multiple(x, 4)
    assert all(s % 4 == 0 and s - o < 4 for s, o in zip(padded.shape[2:], shape))
    assert torch.equal(crop_to(padded, shape), x)
    assert torch.count_nonzero(padded) == torch.count_nonzero(x)  # zeros on the high side
    assert padding_to_multiple(shape, [1] * len(shape)) == [0] * len(shape)
    assert pad_to_multiple(x, 1) is x


def test_resize_to_is_linear_and_a_no_op_at_the_same_size() -> None:
    x = torch.randn(1, 2, 4, 6, 8)
    assert resize_to(x, (4, 6, 8)) is x
    up = resize_to(torch.ones(1, 1, 3, 3), (6, 6))
    assert torch.allclose(up, torch.ones(1, 1, 6, 6))


@pytest.mark.parametrize("spatial", [(3, 4), (2, 3, 4)])
def test_token_layouts_round_trip(spatial: tuple[int, ...]) -> None:
    x = torch.randn(2, 5, *spatial)
    tokens = to_tokens(x)
    assert tokens.shape == (2, torch.Size(spatial).numel(), 5)
    assert torch.equal(tokens[:, 1], x.flatten(2)[..., 1])  # raster order
    assert torch.equal(from_tokens(tokens, spatial), x)
    assert torch.equal(channels_first(channels_last(x)), x)


@pytest.mark.parametrize("name", ["deeplabv3plus", "paratranscnn", "msga_net", "basnet"])
def test_encoders_share_one_forward(name: str) -> None:
    net = create_model(name, spatial_dims=2, in_channels=1, out_channels=2, **model_entry(name).meta["small"])
    encoder = net.get_submodule(model_entry(name).meta["encoder"])
    assert isinstance(encoder, StagedEncoder)
    assert type(encoder).forward is StagedEncoder.forward
    if name != "basnet":
        assert isinstance(encoder, ResNetEncoder)
