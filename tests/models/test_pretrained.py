"""Pretrained-encoder loading: safetensors, torch.save, Lightning .ckpt; wrong shapes and keys."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNet
from safetensors.torch import save_file
from torch import nn

from models.pretrained import CheckpointError, CheckpointMismatchError, load_encoder, read_state_dict


class _TinyNet(nn.Module):
    """An encoder (conv + batch norm, so buffers are loaded too) and a head."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.head = nn.Conv2d(width, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _source(seed: int = 1) -> _TinyNet:
    torch.manual_seed(seed)
    net = _TinyNet()
    with torch.no_grad():
        net.encoder[1].running_mean.uniform_()
    return net


def _assert_encoder_equal(a: _TinyNet, b: _TinyNet) -> None:
    for (ka, va), (kb, vb) in zip(
        a.encoder.state_dict().items(), b.encoder.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb), ka


def _write(path: Path, weights: dict[str, torch.Tensor] | dict) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    else:
        torch.save(weights, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_encoder_loads_from_flat_file(tmp_path: Path, suffix: str) -> None:
    src = _source()
    path = _write(tmp_path / f"enc{suffix}", src.encoder.state_dict())
    dst = _source(seed=2)
    head = dst.head.weight.detach().clone()
    report = load_encoder(dst, path, encoder_attr="encoder")
    _assert_encoder_equal(src, dst)
    assert torch.equal(dst.head.weight, head)  # only the encoder changes
    assert report["loaded"] == sorted(src.encoder.state_dict())
    assert report["missing"] == [] and report["unexpected"] == [] and report["path"] == str(path)


def test_lightning_checkpoint_net_prefix_and_encoder_prefix(tmp_path: Path) -> None:
    src = _source()
    state = collections.OrderedDict((f"net.{k}", v) for k, v in src.state_dict().items())
    state["loss_fn.uncertainty"] = torch.ones(3)  # learnable loss weights are not the network's
    ckpt = {"epoch": 3, "global_step": 12, "pytorch-lightning_version": "2.6.0", "state_dict": state}
    path = _write(tmp_path / "run.ckpt", ckpt)
    assert set(read_state_dict(path)) == set(src.state_dict())
    dst = _source(seed=2)
    report = load_encoder(dst, path, encoder_attr="encoder", prefix="encoder.")
    _assert_encoder_equal(src, dst)
    assert report["encoder"] == "encoder" and len(report["loaded"]) == len(src.encoder.state_dict())
    dst = _source(seed=3)
    report = load_encoder(dst, path, encoder_attr="encoder")  # the encoder's prefix is found
    _assert_encoder_equal(src, dst)
    assert report["prefix"] == "encoder." and report["unexpected"] == []


def test_whole_monai_unet_when_encoder_attr_is_none(tmp_path: Path) -> None:
    def unet() -> UNet:
        return UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,))

    torch.manual_seed(0)
    src = unet()
    path = _write(tmp_path / "unet.safetensors", src.state_dict())
    torch.manual_seed(1)
    dst = unet()
    load_encoder(dst, path, encoder_attr=None)
    x = torch.randn(1, 1, 16, 16)
    src.eval(), dst.eval()
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_wrong_shape_names_file_key_and_shapes(tmp_path: Path) -> None:
    wide = _TinyNet(width=6)
    path = _write(tmp_path / "wide.pt", wide.encoder.state_dict())
    for strict in (True, False):
        with pytest.raises(CheckpointMismatchError) as err:
            load_encoder(_source(), path, encoder_attr="encoder", strict=strict)
        msg = str(err.value)
        assert "wide.pt" in msg and "'encoder'" in msg
        assert "shape mismatches" in msg and "0.weight: checkpoint (6, 1, 3, 3) vs model (4, 1, 3, 3)" in msg
        assert msg.startswith(str(path))


def test_wrong_keys_strict_raises_with_counts_non_strict_loads_the_rest(tmp_path: Path) -> None:
    src = _source()
    weights = dict(src.encoder.state_dict())
    del weights["1.running_var"]
    weights.update({f"extra.{i}": torch.zeros(1) for i in range(7)})
    path = _write(tmp_path / "keys.safetensors", weights)
    dst = _source(seed=2)
    before = dst.encoder[1].running_var.clone()
    with pytest.raises(CheckpointMismatchError) as err:
        load_encoder(dst, path, encoder_attr="encoder")
    msg = str(err.value)
    assert "keys.safetensors" in msg
    assert "1 missing (1.running_var)" in msg
    assert "7 unexpected (extra.0, extra.1, extra.2, extra.3, extra.4, ... (2 more))" in msg
    report = load_encoder(dst, path, encoder_attr="encoder", strict=False)
    assert report["missing"] == ["1.running_var"] and len(report["unexpected"]) == 7
    assert torch.equal(dst.encoder[0].weight, src.encoder[0].weight)
    assert torch.equal(dst.encoder[1].running_var, before)


def test_unreadable_or_unrelated_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(_source(), tmp_path / "none.pt", encoder_attr="encoder")
    path = _write(tmp_path / "obj.pt", {"net": _TinyNet()})  # a pickled module, not tensors
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(path)
    garbage = tmp_path / "bad.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        read_state_dict(garbage)
    ok = _write(tmp_path / "enc.pt", _source().encoder.state_dict())
    with pytest.raises(CheckpointError, match="prefix 'backbone.'"):
        load_encoder(_source(), ok, encoder_attr="encoder", prefix="backbone.")
    with pytest.raises(ValueError, match="no encoder submodule 'backbone'"):
        load_encoder(_source(), ok, encoder_attr="backbone")
    unrelated = _write(tmp_path / "other.pt", {"x.weight": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match="no key in common"):
        load_encoder(_source(), unrelated, encoder_attr="encoder", strict=False)
