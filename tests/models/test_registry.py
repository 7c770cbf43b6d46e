"""Model registrations: declared options (not signatures), variants as data, one import path per piece."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import torch
from torch import nn

import models
from models import create_model, list_models, model_entry, register_model
from models.registry import MODELS, RESERVED_MODEL_ARGS, check_kwargs

_MODELS_DIR = Path(models.__file__).parent


def _builder_params(name: str) -> tuple[set[str], bool]:
    """Keyword parameters of the function or class behind ``name`` (and whether it takes ``**kw``)."""
    factory = model_entry(name).factory
    target = getattr(factory, "func", factory)  # a variant is a partial of the shared builder
    params = inspect.signature(target).parameters.values()
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return names - set(RESERVED_MODEL_ARGS), any(p.kind == p.VAR_KEYWORD for p in params)


@pytest.mark.parametrize("name", list_models())
def test_declared_options_are_the_builders_arguments(name: str) -> None:
    meta = model_entry(name).meta
    params, var_kw = _builder_params(name)
    options = set(meta["options"])
    assert options, f"{name}: no options declared"
    assert set(meta["small"]) <= options
    assert not var_kw, f"{name}: declare the options instead of taking **kwargs"
    fixed = set(meta["model_args"]) - options  # variant arguments the user cannot set
    assert options | fixed == params, f"{name}: options {sorted(options)} vs builder {sorted(params)}"


def test_an_unknown_option_is_one_line_naming_the_accepted_ones() -> None:
    message = r"model 'unet' has no option 'chanels'; accepted: channels, num_res_units, norm, dropout$"
    with pytest.raises(ValueError, match=message):
        check_kwargs("model", "unet", model_entry("unet").factory, ["chanels"])
    with pytest.raises(ValueError, match=message):
        create_model("unet", spatial_dims=2, in_channels=1, out_channels=2, chanels=(4, 8))
    with pytest.raises(ValueError, match="accepted: img_size, feature_size"):  # fixed size: img_size
        check_kwargs("model", "unetr", model_entry("unetr").factory, ["hidden_sizes"])


def test_kwargs_do_not_switch_the_check_off() -> None:
    seen = {}

    @register_model("_kw_probe", family="cnn", options="width")
    def _probe(*, spatial_dims: int, in_channels: int, out_channels: int, **kw) -> nn.Module:
        seen.update(kw)
        return nn.Conv2d(in_channels, out_channels, 1)

    try:
        create_model("_kw_probe", spatial_dims=2, in_channels=1, out_channels=2, width=3)
        assert seen == {"width": 3}
        with pytest.raises(ValueError, match="model '_kw_probe' has no option 'depth'; accepted: width"):
            check_kwargs("model", "_kw_probe", _probe, ["depth"])
        with pytest.raises(ValueError, match="no option 'depth'"):
            create_model("_kw_probe", spatial_dims=2, in_channels=1, out_channels=2, depth=3)
    finally:
        MODELS._entries.pop("_kw_probe")


def test_registration_refuses_a_small_size_that_is_not_an_option() -> None:
    with pytest.raises(ValueError, match="cannot be small sizes or options"):
        register_model("_bad_small", family="cnn", options="width", small={"depth": 2})(lambda **kw: None)
    with pytest.raises(ValueError, match="cannot be small sizes or options"):
        register_model("_bad_option", family="cnn", options="in_channels")(lambda **kw: None)
    assert "_bad_small" not in MODELS and "_bad_option" not in MODELS


@pytest.mark.parametrize(
    ("variants", "args"),
    [
        (("umamba_bot", "umamba_enc"), ({"mamba_at": "bottleneck"}, {"mamba_at": "encoder"})),
        (("xlstm_unet", "xlstm_unet_enc"), ({}, {"vil_stages": (2,)})),
    ],
)
def test_variants_are_data_on_one_builder(variants: tuple[str, str], args: tuple[dict, dict]) -> None:
    entries = [model_entry(v) for v in variants]
    builders = {getattr(e.factory, "func", e.factory) for e in entries}
    assert len(builders) == 1  # one signature, not a copy per variant
    assert [e.meta["model_args"] for e in entries] == list(args)
    assert entries[0].meta["options"] == entries[1].meta["options"]


def test_a_variant_default_is_overridable_when_it_is_an_option() -> None:
    torch.manual_seed(0)
    kw = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "features": (4, 8, 16, 32)}
    enc = create_model("xlstm_unet_enc", **kw)
    plain = create_model("xlstm_unet_enc", **kw, vil_stages=())
    assert sorted(enc.mixers) == ["enc2", "enc3"] and sorted(plain.mixers) == ["enc3"]
    bot = create_model("umamba_bot", spatial_dims=2, in_channels=1, out_channels=2, features=(4, 8))
    enc = create_model("umamba_enc", spatial_dims=2, in_channels=1, out_channels=2, features=(4, 8))
    assert sorted(bot.mixers) == ["enc1"] and sorted(enc.mixers) == ["enc0", "enc1"]
    with pytest.raises(ValueError, match="no option 'mamba_at'"):  # fixed by the variant
        create_model("umamba_bot", spatial_dims=2, in_channels=1, out_channels=2, mamba_at="encoder")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_model_files_import_blocks_from_layers_not_from_other_models() -> None:
    zoo = {p.stem for p in _MODELS_DIR.glob("*.py")} - {
        "__init__",
        "registry",
        "factory",
        "module",
        "deep_supervision",
        "slices",
        "pretrained",
    }
    assert {"unet", "basnet", "deeplabv3plus", "dformer"} <= zoo
    for stem in sorted(zoo):
        imported = _imports(_MODELS_DIR / f"{stem}.py")
        other = {m for m in imported if m.startswith("models.") and m.split(".")[1] in zoo - {stem}}
        assert not other, f"models/{stem}.py imports the model files {sorted(other)}"


def test_register_loss_has_one_import_path() -> None:
    """The loss files register through models.registry; no module re-exports register_loss."""
    for path in sorted(_MODELS_DIR.rglob("*.py")):
        if path.name == "registry.py" or path.parent.name == "__pycache__":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and any(a.name == "register_loss" for a in node.names):
                assert node.module == "models.registry", f"{path}: register_loss from {node.module}"
    assert not hasattr(models.losses, "register_loss")
