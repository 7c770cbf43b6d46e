"""TVConv U-Net: the TVConv layer against nn.Unfold and depthwise conv, layout, fixed size, overfit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import models.tvconv_unet  # noqa: F401  (registers)
from models import count_parameters, create_model, model_entry
from models.factory import InputSizeError
from models.tvconv_unet import TVConv
from tests.models.zoo_checks import assert_gradients, forward_backward, train_dice, vessel_sample

SMALL = model_entry("tvconv_unet").meta["small"]


def _net(spatial_dims: int, img_size: tuple[int, ...], **kw) -> torch.nn.Module:
    return create_model(
        "tvconv_unet",
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=2,
        img_size=img_size,
        **(SMALL | kw),
    )


@pytest.mark.parametrize(("spatial_dims", "shape", "batch"), [(2, (32, 32), 2), (3, (16, 16, 16), 1)])
def test_forward_backward_small(spatial_dims: int, shape: tuple[int, ...], batch: int) -> None:
    torch.manual_seed(0)
    net = _net(spatial_dims, shape).train()
    forward_backward(net, batch, shape)
    assert_gradients(net)
    with pytest.raises(InputSizeError, match="tvconv_unet"):
        net(torch.randn(1, 1, *[2 * s for s in shape]))


def test_tvconv_matches_unfold_reference_2d() -> None:
    """out[b, c, p] = sum_o W[c, o, p] * unfold(x)[b, c, o, p] with torch's own nn.Unfold."""
    torch.manual_seed(0)
    layer = TVConv(5, (12, 10), inter_channels=8, inter_layers=1)
    torch.nn.init.normal_(layer.affinity)
    x = torch.randn(2, 5, 12, 10)
    patches = torch.nn.Unfold(3, padding=1)(x).view(2, 5, 9, 12, 10)
    ref = (layer.kernels().unsqueeze(0) * patches).sum(2)
    torch.testing.assert_close(layer(x), ref)


def test_tvconv_with_one_kernel_everywhere_is_a_depthwise_conv_3d(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    layer = TVConv(3, (6, 5, 4), inter_channels=8, inter_layers=1)
    w = torch.randn(3, 1, 3, 3, 3)
    monkeypatch.setattr(layer, "kernels", lambda: w.view(3, 27, 1, 1, 1).expand(3, 27, 6, 5, 4))
    x = torch.randn(2, 3, 6, 5, 4)
    torch.testing.assert_close(layer(x), F.conv3d(x, w, padding=1, groups=3))


def test_tvconv_is_translation_variant() -> None:
    torch.manual_seed(0)
    layer = TVConv(2, (16, 16), inter_channels=8, inter_layers=1)
    torch.nn.init.normal_(layer.affinity)  # learned layouts differ per position
    x = torch.randn(1, 2, 16, 16)
    shifted_out = layer(torch.roll(x, 3, dims=-1))[..., 4:12, 4:12]
    out_shifted = torch.roll(layer(x), 3, dims=-1)[..., 4:12, 4:12]
    assert not torch.allclose(shifted_out, out_shifted, atol=1e-3)
    conv = torch.nn.Conv2d(2, 2, 3, padding=1, groups=2)  # a plain depthwise conv is equivariant
    torch.testing.assert_close(
        conv(torch.roll(x, 3, -1))[..., 4:12, 4:12], torch.roll(conv(x), 3, -1)[..., 4:12, 4:12]
    )


def test_paper_tvconv_defaults_and_parameter_count() -> None:
    c, h, w = 6, 8, 8
    layer = TVConv(c, (h, w))
    assert layer.k == 3 and layer.affinity.shape == (1, 4, h, w) and bool((layer.affinity == 1).all())
    assert layer.bias_gen is None
    convs = [m for m in layer.weight_gen.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [
        (4, 64),
        (64, 64),
        (64, 64),
        (64, 64),
        (64, c * 9),
    ]
    # hand count: affinity maps + 3x3 convs (no bias) + LayerNorm([64, h, w]) affine of 4 layers
    expected = 4 * h * w + 9 * (4 * 64 + 3 * 64 * 64 + 64 * c * 9) + 4 * 2 * 64 * h * w
    assert count_parameters(layer) == expected


def test_bad_img_size_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="tvconv_unet: img_size"):
        _net(2, (30, 32))


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    x, y = vessel_sample()
    dice = train_dice(_net(2, (32, 32)).train(), x, y, steps=20, lr=1e-2)
    assert dice > 0.9, f"training Dice {dice:.3f}"
