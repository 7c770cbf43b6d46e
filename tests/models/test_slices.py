"""2.5D input mode: shapes, equality with a hand-written slice loop, and slice locality."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models.unet  # noqa: F401  (registers unet)
from models.pretrained import load_encoder
from models.registry import model_entry
from models.slices import SliceStack2p5D, wrap_2p5d

_C, _K, _OUT = 2, 2, 3


def _net2d(in_channels: int = _C * (2 * _K + 1)) -> nn.Module:
    """A 2D net without batch statistics (instance norm), so chunking cannot change its output."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.InstanceNorm2d(8, affine=True),
        nn.ReLU(),
        nn.Conv2d(8, _OUT, 1),
    )


def _volume(depth: int = 7) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, _C, 12, 10, depth)


def _by_hand(net: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """Slice loop written out: for slice d, channels c0@d-k..c0@d+k, c1@d-k..., edges repeated."""
    depth = x.shape[-1]
    outs = []
    for d in range(depth):
        chans = [
            x[:, c, :, :, min(max(d + o, 0), depth - 1)] for c in range(x.shape[1]) for o in range(-k, k + 1)
        ]
        outs.append(net(torch.stack(chans, dim=1)))
    return torch.stack(outs, dim=-1)


@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_equals_the_hand_written_slice_loop(chunk_size: int) -> None:
    net = _net2d()
    wrapped = SliceStack2p5D(net, in_channels=_C, context=_K, chunk_size=chunk_size)
    x = _volume()
    with torch.no_grad():
        y = wrapped(x)
        ref = _by_hand(net, x, _K)
    assert y.shape == (2, _OUT, 12, 10, 7)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)


def test_slice_output_depends_only_on_its_neighbours() -> None:
    wrapped = SliceStack2p5D(_net2d(), in_channels=_C, context=_K)
    x = _volume(depth=9)
    i = 4
    with torch.no_grad():
        base = wrapped(x)
        far = x.clone()
        far[..., i + _K + 1] += 10.0  # just outside the window of slice i
        far[..., i - _K - 1] -= 10.0
        y_far = wrapped(far)
        near = x.clone()
        near[..., i + _K] += 10.0  # the window's last slice
        y_near = wrapped(near)
    assert torch.equal(y_far[..., i], base[..., i])
    assert not torch.equal(y_far[..., i + _K + 1], base[..., i + _K + 1])
    assert not torch.equal(y_near[..., i], base[..., i])


def test_context_zero_is_plain_slice_wise_2d() -> None:
    net = _net2d(in_channels=_C)
    x = _volume(depth=3)
    with torch.no_grad():
        y = SliceStack2p5D(net, in_channels=_C, context=0)(x)
        torch.testing.assert_close(y[..., 1], net(x[..., 1]), rtol=0, atol=1e-6)


def test_wrap_registered_unet_forward_backward_and_encoder_path(tmp_path) -> None:
    torch.manual_seed(0)
    model = wrap_2p5d(
        model_entry("unet").factory, in_channels=1, out_channels=2, context=1, channels=(4, 8), chunk_size=8
    )
    first_conv = next(m for m in model.net.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 3  # 1 channel x (2 * 1 + 1) slices
    x = torch.randn(1, 1, 16, 16, 16)
    y = model(x)
    assert y.shape == (1, 2, 16, 16, 16)
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the inner 2D net's submodules are reachable by dotted path for pretrained loading
    path = tmp_path / "model.pt"
    torch.save(model.net.model[0].state_dict(), path)
    report = load_encoder(model, path, encoder_attr="net.model.0")
    assert report["loaded"] and report["missing"] == []


def test_bad_inputs_raise() -> None:
    wrapped = SliceStack2p5D(_net2d(), in_channels=_C, context=_K)
    with pytest.raises(ValueError, match=r"expected \(B, 2, H, W, D\)"):
        wrapped(torch.zeros(1, _C, 8, 8))
    with pytest.raises(ValueError, match=r"expected \(B, 2, H, W, D\)"):
        wrapped(torch.zeros(1, 1, 8, 8, 4))
    with pytest.raises(ValueError, match="context"):
        wrap_2p5d(model_entry("unet").factory, in_channels=1, out_channels=2, context=-1)
