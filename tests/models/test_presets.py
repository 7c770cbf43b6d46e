"""Model presets: published configurations by name, nnU-Net plans, the ResEnc hybrids.

Parameter counts are compared with networks built independently of segbench's planning code:
nnU-Net's own classes (``dynamic-network-architectures``) with a plan's arguments written out by
hand, MONAI's classes with the papers' settings, and figures the papers publish. Paper-size nets
are built on the meta device (shapes only) where the model allows it.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn

from bench.config import sweep_from_dict
from bench.run import plan_sweep
from models import count_parameters, create_model, list_models, model_entry
from models.layers.mlstm import ViLStack
from models.layers.nnunet import PUBLISHED_PLANS, PlanError, build_nnunet, plan_network, plan_patch_size
from models.layers.ssm import SpatialMambaLayer
from models.registry import UnknownPresetError, register_model, resolve_model_kwargs
from tests.conftest import tiny_sweep_dict

NEW_MODELS = (
    "nnunet_plain",
    "nnunet_resenc",
    "umamba_bot_resenc",
    "umamba_enc_resenc",
    "xlstm_bot_resenc",
    "xlstm_enc_resenc",
)


def _count(name: str, spatial_dims: int, in_channels: int, out_channels: int, **kw: Any) -> int:
    with torch.device("meta"):
        net = create_model(
            name, spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kw
        )
    return count_parameters(net)


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---- nnU-Net's planning rules, against plans worked out by hand ------------------------------

# (patch, spacing) -> (kernel sizes, strides, features) as nnU-Net's planner writes them:
# MSD Hippocampus 3d_fullres / 2d and ACDC 3d_fullres / 2d.
_HAND_PLANS = [
    ((40, 56, 40), (1, 1, 1), [[3, 3, 3]] * 4, [[1, 1, 1]] + [[2, 2, 2]] * 3, [32, 64, 128, 256]),
    ((56, 40), (1, 1), [[3, 3]] * 4, [[1, 1]] + [[2, 2]] * 3, [32, 64, 128, 256]),
    (
        (20, 256, 224),
        (5, 1.5625, 1.5625),
        [[1, 3, 3]] + [[3, 3, 3]] * 5,
        [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]],
        [32, 64, 128, 256, 320, 320],  # capped at 320 in 3D
    ),
    ((256, 224), (1.5625, 1.5625), [[3, 3]] * 6, [[1, 1]] + [[2, 2]] * 5, [32, 64, 128, 256, 512, 512]),
]


@pytest.mark.parametrize(("patch", "spacing", "kernels", "strides", "features"), _HAND_PLANS)
def test_plan_network_follows_nnunet_rules(patch, spacing, kernels, strides, features) -> None:
    plan = plan_network(patch, spacing)
    assert [list(k) for k in plan.kernel_sizes] == kernels
    assert [list(s) for s in plan.strides] == strides
    assert list(plan.features) == features


def test_plan_network_rejects_mismatched_axes() -> None:
    with pytest.raises(PlanError, match="one per axis"):
        plan_network((40, 56, 40), (1, 1))
    with pytest.raises(PlanError, match="too small to pool"):
        plan_network((6, 7), (1, 1))


# nnU-Net's published patches: Hippocampus 3d_fullres 40x56x40 / 2d 56x40; ACDC 20x256x224 / 256x224.
_PUBLISHED_PATCHES = {
    ("hippocampus", 3): (40, 56, 40),
    ("hippocampus", 2): (56, 40),
    ("acdc", 3): (20, 256, 224),
    ("acdc", 2): (256, 224),
}


@pytest.mark.parametrize(("kind", "planner"), [("plain", "default"), ("resenc", "M"), ("resenc", "L")])
@pytest.mark.parametrize(("plan", "dims"), list(_PUBLISHED_PATCHES))
def test_median_shapes_plan_the_published_patches(plan: str, dims: int, kind: str, planner: str) -> None:
    median, spacing = PUBLISHED_PLANS[plan][dims]
    patch, _ = plan_patch_size(median, spacing, kind=kind, planner=planner, in_channels=1, out_channels=4)
    assert patch == _PUBLISHED_PATCHES[plan, dims]  # capped by the median shape: M and L coincide


# nnU-Net's budgets (UNet_reference_val_3d of ResEncUNetPlanner M / L / XL at their GPU targets)
_BUDGETS = {"M": 680_000_000, "L": 2_100_000_000, "XL": 3_600_000_000}


_CT = ((400, 512, 512), (1.0, 0.8, 0.8))  # a CT-like median shape and spacing
_THICK = ((30, 400, 400), (4.0, 1.0, 1.0))  # thick slices: the initial patch follows the spacing


@pytest.mark.parametrize(
    ("planner", "shape", "patch"),
    [
        ("M", _CT, (112, 160, 128)),
        ("L", _CT, (160, 224, 192)),
        ("XL", _CT, (192, 256, 256)),
        ("XL", _THICK, (32, 448, 448)),  # fits: capped by the median shape, padded to 64
    ],
)
def test_the_planner_budget_sizes_the_patch_of_large_images(planner: str, shape, patch) -> None:
    """The larger the GPU budget, the larger the patch, each fitting the budget with nnU-Net's
    estimate (the reference package's summed feature-map size, deep supervision on)."""
    median, spacing = shape
    got, plan = plan_patch_size(
        median, spacing, kind="resenc", planner=planner, in_channels=1, out_channels=3
    )
    assert got == patch
    kernels = [list(k) for k in plan.kernel_sizes]
    strides = [list(s) for s in plan.strides]
    net = _reference_unet("resenc", 1, 3, kernels, strides, list(plan.features))
    net.decoder.deep_supervision = True  # nnU-Net estimates with its side outputs
    assert net.compute_conv_feature_map_size(list(got)) <= _BUDGETS[planner]


def test_resenc_presets_m_l_xl_plan_from_a_median_shape() -> None:
    options = {"median_shape": (400, 512, 512), "spacing": (1.0, 0.8, 0.8)}
    with torch.device("meta"):
        nets = {
            preset: create_model(
                "nnunet_resenc", spatial_dims=3, in_channels=1, out_channels=3, preset=preset, **options
            )
            for preset in ("M", "L", "XL")
        }
    assert [nets[p].plan.n_stages for p in ("M", "L", "XL")] == [6, 6, 7]  # XL's 192x256x256 pools once more
    assert count_parameters(nets["M"]) < count_parameters(nets["XL"])
    with pytest.raises(PlanError, match="not both"):
        _count("nnunet_resenc", 3, 1, 3, patch_size=(40, 56, 40), **options)


# ---- parameter counts of each preset -------------------------------------------------------


def _reference_unet(kind: str, in_ch: int, out_ch: int, kernels, strides, features) -> nn.Module:
    """nnU-Net's class with a plan's ``arch_kwargs`` written out (nnU-Net's plans JSON)."""
    dims = len(strides[0])
    n = len(features)
    common = dict(
        input_channels=in_ch,
        n_stages=n,
        features_per_stage=features,
        conv_op=nn.Conv3d if dims == 3 else nn.Conv2d,
        kernel_sizes=kernels,
        strides=strides,
        num_classes=out_ch,
        conv_bias=True,
        norm_op=nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d,
        norm_op_kwargs={"eps": 1e-5, "affine": True},
        nonlin=nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        deep_supervision=False,
    )
    with torch.device("meta"):
        if kind == "plain":
            return PlainConvUNet(n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1), **common)
        blocks = [1, 3, 4, 6, 6, 6, 6][:n]  # nnU-Net's ResEnc planners (M / L / XL)
        return ResidualEncoderUNet(
            n_blocks_per_stage=blocks, n_conv_per_stage_decoder=[1] * (n - 1), **common
        )


@pytest.mark.parametrize("kind", ["plain", "resenc"])
@pytest.mark.parametrize(
    ("preset", "out_ch", "plan_index"),
    [("hippocampus", 3, 0), ("acdc", 4, 2), ("paper", 4, 2)],  # Hippocampus: 2 labels; ACDC: 3
)
def test_nnunet_presets_match_the_reference_package(
    kind: str, preset: str, out_ch: int, plan_index: int
) -> None:
    _, _, kernels, strides, features = _HAND_PLANS[plan_index]
    reference = _reference_unet(kind, 1, out_ch, kernels, strides, features)
    got = _count(f"nnunet_{kind}", 3, 1, out_ch, preset=preset)
    # the same class and arguments, deep-supervision side heads included (nnU-Net trains with them)
    assert got == _n(reference)


def test_nnunet_resenc_acdc_is_the_published_size() -> None:
    # nnU-Net Revisited's ResEnc U-Net, 6 stages capped at 320 (the ~102 M of segbench issue 27):
    # 101.5 M with 1 input channel and 4 classes.
    assert _count("nnunet_resenc", 3, 1, 4, preset="acdc") == pytest.approx(101.5e6, rel=0.01)


def test_transformer_paper_presets_match_published_counts() -> None:
    # Swin UNETR (Hatamizadeh et al. 2022), BTCV, 1 CT channel, 14 classes, 96³: 62.2 M.
    swin = create_model("swin_unetr", spatial_dims=3, in_channels=1, out_channels=14, preset="paper")
    assert count_parameters(swin) == pytest.approx(62.2e6, rel=0.01)
    # UNETR (Hatamizadeh et al., WACV 2022), the same BTCV setting in MONAI: 92.8 M.
    assert _count("unetr", 3, 1, 14, preset="paper") == pytest.approx(92.8e6, rel=0.01)


def test_user_options_override_the_preset() -> None:
    narrow = _count("nnunet_resenc", 3, 1, 3, preset="hippocampus", base_features=16)
    _, _, kernels, strides, _ = _HAND_PLANS[0]
    assert narrow == _n(_reference_unet("resenc", 1, 3, kernels, strides, [16, 32, 64, 128]))
    with torch.device("meta"):
        net = create_model(
            "unetr", spatial_dims=3, in_channels=1, out_channels=2, preset="paper", img_size=32
        )
    assert net.img_size == (32, 32, 32)


# ---- the hybrids isolate their block --------------------------------------------------------


@pytest.mark.parametrize("preset", ["small", "hippocampus"])
@pytest.mark.parametrize(
    ("name", "layer", "where"),
    [
        ("umamba_bot_resenc", lambda c: SpatialMambaLayer(c, d_state=16, d_conv=4, expand=2), "bottleneck"),
        ("umamba_enc_resenc", lambda c: SpatialMambaLayer(c, d_state=16, d_conv=4, expand=2), "encoder"),
        ("xlstm_bot_resenc", lambda c: ViLStack(c, depth=2, num_heads=4, expansion=2), "bottleneck"),
        ("xlstm_enc_resenc", lambda c: ViLStack(c, depth=2, num_heads=4, expansion=2), "encoder"),
    ],
)
def test_hybrid_minus_backbone_is_the_added_layers(name: str, layer, where: str, preset: str) -> None:
    backbone = _count("nnunet_resenc", 3, 1, 3, preset=preset)
    features = [32, 64, 128, 256] if preset == "hippocampus" else [8, 16, 32, 64]
    stages = features[-1:] if where == "bottleneck" else features
    with torch.device("meta"):
        added = sum(_n(layer(c)) for c in stages)
    assert _count(name, 3, 1, 3, preset=preset) - backbone == added


# ---- presets in the registry and in a sweep --------------------------------------------------


def test_without_a_preset_the_options_are_unchanged() -> None:
    """A sweep that names no preset builds what it built before presets existed."""
    for name in list_models():
        assert resolve_model_kwargs(name, {}) == {}
        assert resolve_model_kwargs(name, {"preset": None}) == {}
    assert resolve_model_kwargs("swin_unetr", {"preset": "paper", "window_size": 4})["window_size"] == 4


def test_every_model_has_a_small_preset_and_small_sizes_have_paper() -> None:
    for name in list_models():
        meta = model_entry(name).meta
        assert meta["presets"]["small"] == meta["small"]
        if meta["small"]:
            assert "paper" in meta["presets"]


def test_unknown_preset_is_one_line_listing_the_presets() -> None:
    with pytest.raises(UnknownPresetError) as err:
        create_model("nnunet_resenc", spatial_dims=3, in_channels=1, out_channels=2, preset="XXL")
    message = str(err.value)
    assert "\n" not in message
    assert (
        message
        == "model 'nnunet_resenc' has no preset 'XXL'; presets: small, paper, hippocampus, acdc, M, L, XL"
    )


def test_a_preset_may_set_only_options() -> None:
    with pytest.raises(ValueError, match="presets set options only"):
        register_model("_bad_preset", family="cnn", options="width", presets={"big": {"depth": 4}})(
            lambda **kw: None
        )


@pytest.mark.parametrize(("name", "preset"), [("swin_unetr", "paper"), ("nnunet_resenc", "acdc")])
def test_a_sweep_entry_with_a_preset_passes_config_checking(name: str, preset: str) -> None:
    plain = plan_sweep(sweep_from_dict(tiny_sweep_dict()))[0]
    (run,) = plan_sweep(sweep_from_dict(tiny_sweep_dict(models=[{"name": name, "preset": preset}])))
    assert run.model.kwargs == {"preset": preset}
    assert run.run_id != plain.run_id


# ---- forward passes of the new models ---------------------------------------------------------


@pytest.mark.parametrize("name", NEW_MODELS)
@pytest.mark.parametrize("shape", [(12, 20), (8, 12, 8)], ids=["2d", "3d"])
def test_small_preset_forward_pads_and_crops(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = create_model(name, spatial_dims=len(shape), in_channels=1, out_channels=2, preset="small")
    x = torch.randn(1, 1, *shape)  # not multiples of the total stride 8: padded, then cropped back
    net.train()
    out = net(x)  # in training: the logits and nnU-Net's deep-supervision side logits
    assert out["logits"].shape == (1, 2, *shape) and out["aux"]
    loss = out["logits"].square().mean() + sum(a.square().mean() for a in out["aux"])
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)  # every parameter is used
    net.eval()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 2, *shape) and torch.isfinite(y).all()


@pytest.mark.parametrize("shape", [(13, 22), (9, 12, 7)], ids=["2d", "3d"])
def test_side_outputs_of_the_nnunet_wrapper(shape: tuple[int, ...]) -> None:
    plan = plan_network((40, 56, 40)[: len(shape)], (1.0,) * len(shape), base_features=4, max_features=16)
    net = build_nnunet(
        "resenc", spatial_dims=len(shape), in_channels=1, out_channels=2, plan=plan, side_outputs=True
    )
    out = net.train()(torch.randn(1, 1, *shape))
    assert out["logits"].shape == (1, 2, *shape)
    # side logits of the decoder stages but the coarsest (stride 2 and 4 of the 4-stage plan), cropped
    assert [tuple(a.shape[2:]) for a in out["aux"]] == [
        tuple(math.ceil(s / f) for s in shape) for f in (2, 4)
    ]
    assert net.eval()(torch.randn(1, 1, *shape)).shape == (1, 2, *shape)


def test_the_resolved_config_states_every_option_a_preset_set() -> None:
    from bench.config import sweep_from_dict
    from bench.run.plan import resolve_run

    sweep = {
        "models": [{"name": "unetr", "preset": "paper", "num_heads": 8}],
        "datasets": [{"name": "synthetic_vessels_3d"}],
    }
    cfg = sweep_from_dict(sweep).expand()[0]
    kwargs = resolve_run(cfg).model.kwargs
    # the paper's settings by hand, the user's option over the preset's, the patch as img_size
    assert kwargs["preset"] == "paper" and kwargs["hidden_size"] == 768 and kwargs["mlp_dim"] == 3072
    assert kwargs["num_heads"] == 8 and kwargs["img_size"] == list(resolve_run(cfg).data.patch_size)
    assert cfg.model.kwargs == {"preset": "paper", "num_heads": 8}  # the run id hashes what was typed
