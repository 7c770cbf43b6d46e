"""MaskFormer (models/mask_former.py): shapes, the semantic and RbA formulas by hand, gradients,
parameter counts, training on a tiny task, the matching loss and the zoo's generic checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models.mask_former  # noqa: F401  (registers mask_former)
from models import count_parameters, create_loss, create_model
from models.mask_former import case_ood_score, rba_score, semantic_probabilities, set_prediction_loss
from models.registry import preset_kwargs
from tests.models.zoo_checks import (
    SMALL_INPUTS,
    assert_gradients,
    check_small_forward_backward,
    forward_backward,
    small_model,
)

NAME = "mask_former"


def _net(spatial_dims: int, out_channels: int = 2, **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(NAME, spatial_dims=spatial_dims, in_channels=1, out_channels=out_channels, **kw)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _semantic_by_hand(class_logits: np.ndarray, mask_logits: np.ndarray) -> np.ndarray:
    """sum over queries of softmax(class)[:K] * sigmoid(mask), a loop per query: (B, K, *S)."""
    b, q, k1 = class_logits.shape
    e = np.exp(class_logits - class_logits.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    out = np.zeros((b, k1 - 1, *mask_logits.shape[2:]))
    for i in range(b):
        for j in range(q):
            for k in range(k1 - 1):
                out[i, k] += p[i, j, k] * _sigmoid(mask_logits[i, j])
    return out


# ---- shapes, formulas, gradients ------------------------------------------------------------


@pytest.mark.parametrize(("spatial_dims", "shape"), [(2, (20, 24)), (3, (16, 16, 16))])
def test_output_shapes(spatial_dims: int, shape: tuple[int, ...]) -> None:
    net = _net(spatial_dims, out_channels=3, num_queries=5)
    with torch.no_grad():
        out = net(torch.randn(2, 1, *shape))
    assert out["logits"].shape == (2, 3, *shape)
    assert out["class_logits"].shape == (2, 5, 4)  # K + 1 ("no object")
    assert out["mask_logits"].shape == (2, 5, *shape)
    assert out["ood"].shape == (2, *shape)


@pytest.mark.parametrize(("spatial_dims", "shape"), [(2, (16, 12)), (3, (8, 8, 8))])
def test_semantic_logits_and_rba_match_the_formulas_by_hand(
    spatial_dims: int, shape: tuple[int, ...]
) -> None:
    net = _net(spatial_dims, out_channels=3, num_queries=4, eps=1e-6).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, *shape))
    cls, masks = out["class_logits"].double().numpy(), out["mask_logits"].double().numpy()
    semantic = _semantic_by_hand(cls, masks)
    np.testing.assert_allclose(out["logits"].numpy(), np.log(semantic + 1e-6), rtol=1e-4, atol=1e-5)
    # RbA (Nayal et al. 2023, the authors' get_RbA): minus the sum over classes of tanh(semantic).
    rba = np.zeros(semantic.shape[:1] + semantic.shape[2:])
    for k in range(semantic.shape[1]):
        rba -= np.tanh(semantic[:, k])
    np.testing.assert_allclose(out["ood"].numpy(), rba, rtol=1e-4, atol=1e-5)
    assert (out["ood"] <= 0).all() and (out["ood"] > -3).all()


def test_rba_is_high_where_every_query_rejects() -> None:
    # Two queries, K = 2. Pixel 0: query 0 claims it confidently for class 0 -> low score (inlier);
    # pixel 1: both masks are off -> every class rejects it -> score near 0, the maximum.
    cls = torch.tensor([[[8.0, -8.0, -8.0], [-8.0, 8.0, -8.0]]])
    masks = torch.tensor([[[10.0, -10.0], [-10.0, -10.0]]])
    ood = rba_score(semantic_probabilities(cls, masks))
    assert ood[0, 1] > -0.01 and ood[0, 0] < -0.7
    assert math.isclose(float(ood[0, 0]), -math.tanh(1.0), abs_tol=1e-3)


def test_gradients_reach_queries_and_backbone() -> None:
    net = _net(2)
    out = net(torch.randn(2, 1, 16, 16))
    out["logits"].square().mean().backward()
    for p in (
        net.query_embed.weight,
        net.encoder.stem[0].conv.weight,
        net.encoder.stages[-1][0].body[0].conv.weight,
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0
    net.zero_grad()
    net(torch.randn(2, 1, 16, 16))["ood"].sum().backward()  # the OOD score is differentiable too
    assert net.query_embed.weight.grad.abs().sum() > 0


# ---- parameter counts ------------------------------------------------------------------------


def _conv_bn(d: int, k: int, cin: int, cout: int) -> int:
    return k**d * cin * cout + 2 * cout  # no bias before batch norm; BN weight + bias


def _small_count(d: int, cin: int, classes: int) -> int:
    """The small preset's parameters, counted by hand from its layers (base 16, FPN 32, hidden 64)."""
    w = (16, 32, 64, 128)
    enc = _conv_bn(d, 7, cin, 16) + 2 * _conv_bn(d, 3, 16, 16)  # stem, stage 0 (identity shortcut)
    for a, b in zip(w[:-1], w[1:], strict=True):  # stages 1-3: two 3x3 convs + 1x1 projection
        enc += _conv_bn(d, 3, a, b) + _conv_bn(d, 3, b, b) + _conv_bn(d, 1, a, b)
    fpn = _conv_bn(d, 3, 128, 32) + sum(_conv_bn(d, 1, c, 32) for c in w[:3])
    fpn += 3 * _conv_bn(d, 3, 32, 32) + (3**d * 32 * 32 + 32)  # output convs, mask-feature conv
    proj, queries = 128 * 64 + 64, 8 * 64
    attn = 4 * 64 * 64 + 4 * 64  # q, k, v, out projections with biases
    layer = 2 * attn + (64 * 128 + 128) + (128 * 64 + 64) + 3 * 2 * 64  # + FFN + 3 LayerNorms
    decoder = 2 * layer + 2 * 64  # 2 layers + final LayerNorm
    heads = (64 * (classes + 1) + classes + 1) + 2 * (64 * 64 + 64) + (64 * 32 + 32)
    return enc + fpn + proj + queries + decoder + heads


@pytest.mark.parametrize(("spatial_dims", "expected"), [(2, 505_651), (3, 1_247_635)])
def test_small_parameter_count_is_pinned(spatial_dims: int, expected: int) -> None:
    net = _net(spatial_dims)
    assert count_parameters(net) == _small_count(spatial_dims, 1, 2) == expected
    assert expected <= 1_500_000  # the CPU size


def test_paper_preset_is_maskformer_r50() -> None:
    with torch.device("meta"):  # count without allocating the weights
        net = create_model(NAME, spatial_dims=2, in_channels=3, out_channels=150, preset="paper")
    # torchvision resnet50: 25,557,032 parameters, of which 2048 * 1000 + 1000 are its fc layer.
    assert count_parameters(net.encoder) == 25_557_032 - 2_049_000
    assert net.query_embed.num_embeddings == 100 and len(net.decoder.layers) == 6
    # MaskFormer R50 on ADE20K (150 classes) has 41 M parameters (Table 1): 41.31 M here.
    assert abs(count_parameters(net) - 41e6) < 0.5e6
    assert preset_kwargs(NAME, "small") == {}  # small is the builder's defaults


# ---- training and the zoo's generic checks --------------------------------------------------


def test_dice_ce_training_decreases_the_loss() -> None:
    torch.manual_seed(0)
    y = torch.zeros(2, 1, 16, 16, dtype=torch.long)
    y[0, :, 4:10, 3:12] = 1
    y[1, :, 8:14, 6:15] = 1
    x = y.float() * 2 - 1 + 0.1 * torch.randn(2, 1, 16, 16)
    net = _net(2)
    loss_fn = create_loss("dice_ce")
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn(net(x)["logits"], y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses


@pytest.mark.parametrize(("spatial_dims", "batch", "shape"), SMALL_INPUTS)
def test_zoo_forward_backward_small(spatial_dims: int, batch: int, shape: tuple[int, ...]) -> None:
    check_small_forward_backward(NAME, spatial_dims, batch, shape)


def test_zoo_forward_backward_with_matching_loss() -> None:
    torch.manual_seed(0)
    net = small_model(NAME, 2, matching_weight=1.0)
    forward_backward(net, 2, (16, 16), aux_label=True)
    assert_gradients(net, nonzero=True)


# ---- the set-prediction (matching) loss and the per-case OOD score --------------------------


def test_aux_loss_is_off_by_default() -> None:
    net = _net(2)
    out = net(torch.randn(2, 1, 8, 8))
    assert float(net.aux_loss(out, {"label": torch.zeros(2, 1, 8, 8, dtype=torch.long)})) == 0.0


def test_matching_loss_one_query_by_hand() -> None:
    # One query, one class present: the query is matched to it; 2*CE + 5*BCE + 5*(1 - Dice).
    cls = torch.tensor([[[0.3, 1.2, -0.5]]])  # K = 2
    masks = torch.tensor([[[0.5, -1.0, 2.0, 0.0]]])
    label = torch.ones(1, 1, 4, dtype=torch.long)
    z = np.array([0.3, 1.2, -0.5])
    ce = -(z[1] - np.log(np.exp(z).sum()))
    m, t = np.array([0.5, -1.0, 2.0, 0.0]), np.ones(4)
    bce = np.mean(np.log1p(np.exp(-m)))  # target 1 everywhere
    s = _sigmoid(m)
    dice = 1 - (2 * (s * t).sum() + 1) / (s.sum() + t.sum() + 1)
    expected = 2 * ce + 5 * bce + 5 * dice
    assert math.isclose(float(set_prediction_loss(cls, masks, label)), expected, rel_tol=1e-5)


def test_matching_loss_matches_queries_to_the_right_classes() -> None:
    # Label: left half class 0, right half class 1. Query 1 predicts class 0 on the left, query 2
    # class 1 on the right, query 0 "no object": a perfect set. Hungarian matching must find it
    # whatever the query order; swapping only the class logits of queries 1 and 2 costs more.
    label = torch.tensor([[[0, 0, 1, 1]]])
    big = 12.0
    cls = torch.tensor([[[-big, -big, big], [big, -big, -big], [-big, big, -big]]])
    masks = torch.tensor([[[-big] * 4, [big, big, -big, -big], [-big, -big, big, big]]])
    perfect = float(set_prediction_loss(cls, masks, label))
    assert perfect < 1e-3
    perm = torch.tensor([2, 0, 1])
    assert math.isclose(
        float(set_prediction_loss(cls[:, perm], masks[:, perm], label)), perfect, abs_tol=1e-6
    )
    swapped = cls[:, [0, 2, 1]]
    assert float(set_prediction_loss(swapped, masks, label)) > 1.0


def test_case_ood_score_is_the_mean_over_the_fov() -> None:
    ood = torch.tensor([[-1.0, -0.5], [0.0, -0.25]])
    assert case_ood_score(ood) == pytest.approx(-1.75 / 4)
    fov = torch.tensor([[1, 0], [1, 0]])
    assert case_ood_score(ood, fov) == pytest.approx(-0.5)
    assert math.isnan(case_ood_score(ood, torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="fov shape"):
        case_ood_score(ood, torch.ones(3))
