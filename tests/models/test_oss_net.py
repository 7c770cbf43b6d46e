"""OSS-Net: dense logits from per-point decoding, local patch mapping, chunking, paper widths, overfit."""

from __future__ import annotations

import pytest
import torch

import models.oss_net  # noqa: F401  (registers)
from models import create_model, model_entry
from tests.models.zoo_checks import assert_gradients, forward_backward, train_dice, vessel_sample

SMALL = model_entry("oss_net").meta["small"]


def _net(spatial_dims: int, in_channels: int = 1, **kw) -> torch.nn.Module:
    return create_model(
        "oss_net", spatial_dims=spatial_dims, in_channels=in_channels, out_channels=2, **(SMALL | kw)
    )


@pytest.mark.parametrize(("spatial_dims", "shape", "batch"), [(2, (32, 32), 2), (3, (16, 16, 16), 1)])
def test_forward_backward_small(spatial_dims: int, shape: tuple[int, ...], batch: int) -> None:
    torch.manual_seed(0)
    net = _net(spatial_dims).train()
    forward_backward(net, batch, shape)
    assert_gradients(net)
    with torch.no_grad():  # sizes below the encoder's total stride are padded for the encoder
        assert net.eval()(torch.randn(1, 1, *[s // 2 + 3 for s in shape])).shape[2:] == tuple(
            s // 2 + 3 for s in shape
        )


def test_dense_logits_are_the_occupancy_decoder_at_each_voxel() -> None:
    torch.manual_seed(0)
    net = _net(3, in_channels=2).eval()
    x = torch.randn(1, 2, 12, 10, 8)
    with torch.no_grad():
        dense = net(x)
        z = net.encoder(x)[0]
        padded = torch.nn.functional.pad(x[0], [3] * 6)
        for v in [(0, 0, 0), (5, 9, 3), (11, 4, 7)]:
            patch = padded[:, v[0] : v[0] + 7, v[1] : v[1] + 7, v[2] : v[2] + 7]  # 7^3 around v
            coords = torch.tensor([[2 * c / (s - 1) - 1 for c, s in zip(v, (12, 10, 8))]])
            torch.testing.assert_close(
                net.decode(coords, patch[None], z), dense[0, :, v[0], v[1], v[2]][None]
            )


def test_local_features_equal_the_patch_convolutions() -> None:
    torch.manual_seed(0)
    for dims, shape in ((2, (3, 7, 7)), (3, (2, 7, 7, 7))):
        net = _net(dims, in_channels=shape[0])
        patches = torch.randn(9, *shape)
        torch.testing.assert_close(net.local_features(patches), net.patch_mapping(patches).flatten(1))


def test_chunking_and_checkpointing_change_nothing() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    ref = _net(2, chunk=4096, use_checkpoint=False).train()
    other = _net(2, chunk=4096, use_checkpoint=True).train()
    other.load_state_dict(ref.state_dict())
    ref(x).square().mean().backward()
    other(x).square().mean().backward()
    for (name, a), b in zip(ref.named_parameters(), other.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    small_chunks = _net(2, chunk=37).eval()
    small_chunks.load_state_dict(ref.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(small_chunks(x), ref.eval()(x))


def test_paper_setting_a_widths() -> None:
    with torch.device("meta"):
        net = create_model("oss_net", spatial_dims=3, in_channels=4, out_channels=2)
    # official config "oss_net_A": decoder input 320 (latent) + 3 (coordinates) + 7^3 (patch)
    assert net.blocks[0].fc1.in_features == 320 + 3 + 7**3
    assert [b.fc2.out_features for b in net.blocks] == [512] * 5
    assert [b.main[0].out_channels for b in net.encoder.blocks] == [16, 32, 64, 128]
    assert net.encoder.final.conv.kernel_size == (5, 5, 5) and net.encoder.final.conv.out_channels == 1
    assert [m.kernel_size for m in net.patch_mapping if isinstance(m, torch.nn.Conv3d)] == [(7, 7, 7)] * 2
    assert net.patch_mapping[0].out_channels == 2 and net.patch_mapping[2].out_channels == 1  # C -> C/2 -> 1


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    x, y = vessel_sample()
    dice = train_dice(_net(2).train(), x, y, steps=35, lr=1e-2)
    assert dice > 0.9, f"training Dice {dice:.3f}"
