"""Fixed-input-size models declare it in the registry (as timm's ``fixed_input_size``); the runner
fills ``img_size`` from there, and a wrong-size input is an error naming the model and sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.config import sweep_from_dict
from bench.run import resolve_run
from models.factory import InputSizeError, create_model
from models.registry import MODELS, model_entry, register_model
from tests.conftest import tiny_sweep_dict


def test_unetr_declares_a_fixed_input_size() -> None:
    assert model_entry("unetr").meta["fixed_input_size"] is True
    assert model_entry("unet").meta["fixed_input_size"] is False


def test_wrong_size_input_names_model_and_sizes() -> None:
    net = create_model(
        "unetr",
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        img_size=(32, 32),
        hidden_size=32,
        mlp_dim=32,
        num_heads=2,
        feature_size=4,
    )
    assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)
    with pytest.raises(
        InputSizeError, match=r"model 'unetr' accepts inputs of exactly \(32, 32\).*got \(48, 48\)"
    ):
        net(torch.zeros(1, 1, 48, 48))


def test_runner_fills_img_size_from_the_registry_not_the_signature() -> None:
    """A fixed-size builder that takes ``**kw`` (nothing to sniff) still gets the patch size."""
    seen = {}

    @register_model("_fixed_probe", family="cnn", fixed_input_size=True)
    def _probe(*, spatial_dims: int, in_channels: int, out_channels: int, **kw) -> nn.Module:
        seen.update(kw)
        return nn.Conv2d(in_channels, out_channels, 1)

    try:
        sweep = tiny_sweep_dict(models=["_fixed_probe"])
        cfg = resolve_run(sweep_from_dict(sweep).expand()[0])
        assert cfg.model.kwargs["img_size"] == [32, 32]
        create_model("_fixed_probe", spatial_dims=2, in_channels=1, out_channels=2, **cfg.model.kwargs)
        assert seen["img_size"] == (32, 32)
    finally:
        MODELS._entries.pop("_fixed_probe")
