"""H-DenseUNet: forward/backward, slices with neighbours, hybrid feature fusion, paper layers, overfit."""

from __future__ import annotations

import pytest
import torch

import models.h_denseunet  # noqa: F401  (registers)
from models import create_model, model_entry
from models.h_denseunet import _slices_with_neighbours
from tests.models.zoo_checks import assert_gradients, forward_backward, train_dice, vessel_sample

SMALL = model_entry("h_denseunet").meta["small"]


def _net(**kw) -> torch.nn.Module:
    return create_model("h_denseunet", spatial_dims=3, in_channels=1, out_channels=2, **(SMALL | kw))


def test_forward_backward_small() -> None:
    torch.manual_seed(0)
    net = _net().train()
    _, out = forward_backward(net, 1, (32, 32, 32), aux_label=True)
    assert out["aux"][0].shape == (1, 2, 32, 32, 32)
    assert_gradients(net)
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 1, 48, 16, 20)).shape == (1, 2, 48, 16, 20)  # padded, cropped


def test_slices_carry_both_neighbours() -> None:
    x = torch.randn(2, 2, 5, 6, 4)  # 2 channels, slice axis last
    s = _slices_with_neighbours(x, axis=2)
    assert s.shape == (2 * 4, 6, 5, 6)
    for b in range(2):
        for z in range(4):
            near = [max(z - 1, 0), z, min(z + 1, 3)]  # the edge slice repeats at the ends
            expected = torch.stack([x[b, c, :, :, k] for c in range(2) for k in near])  # channel-major
            torch.testing.assert_close(s[b * 4 + z], expected)


def test_hybrid_feature_fusion() -> None:
    torch.manual_seed(0)
    net = _net().eval()
    seen: dict[str, object] = {}
    net.net2d.register_forward_hook(lambda _m, a, out: seen.update(in2d=a[0], out2d=out))
    net.net3d.register_forward_hook(lambda _m, a, out: seen.update(in3d=a[0], out3d=out))
    net.hff.register_forward_hook(lambda _m, a, _o: seen.update(hff=a[0]))
    x = torch.randn(2, 1, 32, 32, 8)
    with torch.no_grad():
        net(x)
    assert seen["in2d"].shape == (2 * 8, 3, 32, 32)  # every slice of every volume, 3 slices deep
    feat2d, logit2d = seen["out2d"]
    vol = lambda t: t.reshape(2, 8, *t.shape[1:]).permute(0, 2, 3, 4, 1)  # noqa: E731
    # the 3D net sees the image and the 2D probabilities stacked back into a volume
    torch.testing.assert_close(seen["in3d"], torch.cat([x, torch.softmax(vol(logit2d), 1)], 1))
    # the HFF layer sees the sum of the 2D (intra-slice) and 3D (inter-slice) features
    torch.testing.assert_close(seen["hff"], vol(feat2d) + seen["out3d"][0])


def test_paper_size_layers() -> None:
    with torch.device("meta"):
        net = create_model("h_denseunet", spatial_dims=3, in_channels=1, out_channels=3)
    # "2D DenseUNet-167" and "3D DenseUNet-65" count their convolution layers (Table I); the 3D
    # classifier is replaced by the HFF layer + classifier of the fusion, hence + 1
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.net2d.modules()) == 167
    assert sum(isinstance(m, torch.nn.Conv3d) for m in net.net3d.modules()) + 1 == 65
    assert [m.out_channels for m in (c.conv for c in net.net2d.decoder)] == [768, 384, 96, 96, 64]
    assert [m.out_channels for m in (c.conv for c in net.net3d.decoder)] == [504, 224, 192, 96, 64]
    assert net.net2d.skip_used == [True] * 4 + [False]  # every encoder level summed in 2D
    assert net.net3d.skip_used == [True] + [False] * 4  # only the projected deepest one in 3D
    pools = [getattr(net.net3d.encoder, f"transition{j}").pool.kernel_size for j in (1, 2, 3)]
    assert pools == [(2, 2, 1)] * 3  # the slice axis is not pooled by the transitions
    assert model_entry("h_denseunet").meta["deep_supervision"].weights(1) == (0.5,)  # lambda of Eq. 7


def test_two_dimensional_input_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="supports spatial_dims"):
        create_model("h_denseunet", spatial_dims=2, in_channels=1, out_channels=2)


@pytest.mark.slow
def test_overfits_one_sample() -> None:
    """One synthetic vessel image stacked into an 8-slice volume."""
    torch.manual_seed(0)
    x, y = (t[..., None].repeat(1, 1, 1, 1, 8) for t in vessel_sample())
    dice = train_dice(_net().train(), x, y, steps=18, lr=1e-2)
    assert dice > 0.9, f"training Dice {dice:.3f}"
