import pytest
import torch

import datamodules
import models
from bench.registry import Registry, UnknownNameError
from models import parse_loss_name
from models.losses import WeightedSumLoss


def test_spine_registrations():
    assert {"unet", "resenc_unet"} <= set(models.list_models())
    assert {"dice", "dice_ce"} <= set(models.list_losses())
    assert {"synthetic_vessels", "synthetic_vessels_3d"} <= set(datamodules.list_datasets())
    assert set(models.list_models(family="cnn")) >= {"unet", "resenc_unet"}


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: models.create_model("unett", spatial_dims=2, in_channels=1, out_channels=2), "model"),
        (lambda: models.create_loss("dicee"), "loss"),
        (lambda: datamodules.create_datamodule("drivee"), "dataset"),
    ],
)
def test_unknown_names_list_the_known_ones(call, name):
    with pytest.raises(KeyError) as err:
        call()
    text = str(err.value)
    assert text.startswith(f"unknown {name}")
    assert "known:" in text


def test_register_twice_and_dims_check():
    reg: Registry[object] = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(lambda: 2)
    with pytest.raises(UnknownNameError, match="known: a"):
        reg.get("b")
    models.register_model("_only2d_test", family="cnn", dims=(2,))(lambda **kw: torch.nn.Identity())
    try:
        with pytest.raises(ValueError, match="supports spatial_dims"):
            models.create_model("_only2d_test", spatial_dims=3, in_channels=1, out_channels=2)
    finally:
        models.MODELS._entries.pop("_only2d_test")


def test_unet_shapes_2d_and_3d():
    net = models.create_model("unet", spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8, 16))
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 2, 32, 32)
    net3 = models.create_model(
        "resenc_unet", spatial_dims=3, in_channels=1, out_channels=3, filters=(4, 8, 16)
    )
    assert net3(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


def test_composite_loss_is_the_weighted_sum():
    assert parse_loss_name("dice_ce+0.5*dice") == [(1.0, "dice_ce"), (0.5, "dice")]
    with pytest.raises(ValueError, match="cannot parse loss term"):
        parse_loss_name("dice+*")
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 16, 16)
    target = torch.randint(0, 2, (2, 1, 16, 16))
    combo = models.create_loss("dice_ce+0.5*dice")
    assert isinstance(combo, WeightedSumLoss)
    expected = models.create_loss("dice_ce")(logits, target) + 0.5 * models.create_loss("dice")(
        logits, target
    )
    assert torch.allclose(combo(logits, target), expected)
    with pytest.raises(ValueError, match="do not name a term"):
        models.create_loss("dice_ce+dice", alpha=1)
