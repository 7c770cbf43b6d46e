"""Attention U-Net (``models/attention_unet.py``): shapes, gradients and the presets' sizes.

Parameter counts are pinned as figures and checked against MONAI's ``AttentionUnet`` built here
directly with the presets' settings (not through segbench's registry).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from monai.networks.nets import AttentionUnet

from models import count_parameters, create_model, model_entry


def _count(spatial_dims: int, **kw: Any) -> int:
    with torch.device("meta"):
        net = create_model("attention_unet", spatial_dims=spatial_dims, in_channels=1, out_channels=2, **kw)
    return count_parameters(net)


def _monai(spatial_dims: int, channels: tuple[int, ...]) -> int:
    with torch.device("meta"):
        net = AttentionUnet(
            spatial_dims=spatial_dims,
            in_channels=1,
            out_channels=2,
            channels=channels,
            strides=(2,) * (len(channels) - 1),
        )
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("dims", [2, 3])
def test_forward_backward_shapes(dims: int) -> None:
    torch.manual_seed(0)
    net = create_model(
        "attention_unet", spatial_dims=dims, in_channels=2, out_channels=3, channels=(4, 8, 16)
    )
    x = torch.randn((1, 2) + (16,) * dims)
    out = net(x)
    assert out.shape == (1, 3) + (16,) * dims
    out.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


# (dims, preset) -> trainable parameters with in_channels=1, out_channels=2.
# small = channels (16, 32, 64, 128) (the ``unet`` default widths: 401,605 / 1,186,765 parameters);
# paper = the reference code's filters [64, 128, 256, 512, 1024] / feature_scale 4. Oktay et al.
# report 6.40 M parameters for their 3D Attention U-Net; MONAI's AttentionUnet has no deep
# supervision and gates each skip with the same-level decoder feature, so its count differs:
# 5,909,130 in 3D (docs/models.md, Attention U-Net).
_COUNTS = {
    (2, "small"): 493_990,
    (3, "small"): 1_466_566,
    (2, "paper"): 1_987_434,
    (3, "paper"): 5_909_130,
}


@pytest.mark.parametrize(("dims", "preset"), list(_COUNTS))
def test_preset_parameter_counts(dims: int, preset: str) -> None:
    channels = (16, 32, 64, 128) if preset == "small" else (16, 32, 64, 128, 256)
    assert _count(dims, preset=preset) == _COUNTS[(dims, preset)] == _monai(dims, channels)


def test_default_is_small_and_paper_is_within_the_papers_size() -> None:
    assert _count(3) == _COUNTS[(3, "small")]
    assert abs(_COUNTS[(3, "paper")] - 6.40e6) / 6.40e6 < 0.1  # MONAI's variant: 5.91 M vs 6.40 M
    assert model_entry("attention_unet").meta["family"] == "cnn"
    assert set(model_entry("attention_unet").meta["presets"]) == {"small", "paper"}
