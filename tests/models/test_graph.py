"""Tests of the GNN-decoder family: graph layers, the contour rasteriser, HybridGNet(-dense)."""

from __future__ import annotations

import math

import pytest
import torch
from monai.losses import DiceCELoss

from models import create_model
from models.layers.contour_raster import contours_to_logits, polygon_signed_distance
from models.layers.graph import (
    ChebGraphConv,
    contour_unpool_matrix,
    cycle_graph,
    grid_graph,
    knn_graph,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


# ---- graph layers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edges",
    [cycle_graph([5, 7]), grid_graph((3, 4)), grid_graph((2, 3, 4))],
    ids=["cycle", "grid2d", "grid3d"],
)
def test_cheb_conv_fallback_matches_torch_geometric(edges: torch.Tensor) -> None:
    pyg = ChebGraphConv(4, 6, K=3)
    if pyg.pyg is None:
        pytest.skip("torch_geometric is not importable")
    own = ChebGraphConv(4, 6, K=3, use_pyg=False)
    with torch.no_grad():
        for lin_own, lin_pyg in zip(own.lins, pyg.pyg.lins):
            lin_own.weight.copy_(lin_pyg.weight)
        own.bias.copy_(torch.randn(6))
        pyg.pyg.bias.copy_(own.bias)
    x = torch.randn(2, int(edges.max()) + 1, 4)
    torch.testing.assert_close(own(x, edges), pyg(x, edges))


def test_graph_constructors() -> None:
    assert cycle_graph([4]).shape == (2, 8)
    assert grid_graph((3, 4)).shape[1] == 2 * (2 * 4 + 3 * 3)  # both directions
    assert grid_graph((2, 2, 2)).shape[1] == 2 * 12  # the 12 edges of a cube
    unpool = contour_unpool_matrix([3, 5], [6, 9])
    assert unpool.shape == (15, 8)
    torch.testing.assert_close(unpool.sum(1), torch.ones(15))
    edges = knn_graph(torch.randn(2, 10, 3), k=3)
    assert edges.max() < 20 and ((edges[0] < 10) == (edges[1] < 10)).all()  # no cross-sample edge


# ---- rasteriser ---------------------------------------------------------------------------


def test_rasterised_square_matches_hand_made_mask() -> None:
    """A square contour with 8 vertices (corners and edge midpoints) gives ~1 inside and ~0
    outside: IoU > 0.95 against the hand-made mask; signed distances are exact in pixels."""
    size, lo, hi = 32, 8, 24  # the square covers pixel rows / cols 8..23
    corners = [(lo, lo), (hi, lo), (hi, hi), (lo, hi)]
    verts = []
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]):
        verts += [(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2)]
    landmarks = torch.tensor(verts, dtype=torch.float32)[None] / size
    logits = contours_to_logits(landmarks, [8], [1], num_classes=2, shape=(size, size))
    soft = logits.softmax(1)[0, 1]
    truth = torch.zeros(size, size, dtype=torch.bool)
    truth[lo:hi, lo:hi] = True
    assert _iou(soft > 0.5, truth) > 0.95
    assert soft[truth].mean() > 0.8 and soft[~truth].mean() < 0.1  # edge pixels are soft
    sd = polygon_signed_distance(landmarks, (size, size))[0]
    assert sd[12, 16] == pytest.approx(4.5, abs=1e-3)  # centre (x, y) = (16.5, 12.5)
    assert sd[0, 16] == pytest.approx(-7.5, abs=1e-3)  # (16.5, 0.5): 7.5 px above the top edge


def test_chunked_distance_matches_brute_force() -> None:
    """Nearest-edge search in pixel blocks + distance to that edge = min over all edges, in
    value and in gradient."""
    torch.manual_seed(0)
    verts = (0.2 + 0.6 * torch.rand(2, 9, 2)).requires_grad_()
    sd = polygon_signed_distance(verts, (13, 11), chunk=7)
    grad = torch.autograd.grad(sd.abs().sum(), verts)[0]
    a = verts * torch.tensor([11.0, 13.0])
    b = torch.roll(a, -1, dims=1)
    ys, xs = torch.meshgrid(torch.arange(13) + 0.5, torch.arange(11) + 0.5, indexing="ij")
    p = torch.stack([xs.flatten(), ys.flatten()], dim=-1)[None, :, None]
    ab, ap = (b - a)[:, None], p - a[:, None]
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1)).clamp(0, 1)
    ref = (ap - t[..., None] * ab).norm(dim=-1).amin(-1).view(2, 13, 11)
    torch.testing.assert_close(sd.abs(), ref, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(grad, torch.autograd.grad(ref.sum(), verts)[0], atol=1e-3, rtol=1e-3)


def test_logits_of_multiple_classes() -> None:
    """Two disjoint contours of two classes plus a class nobody draws."""
    theta = torch.arange(16) * (2 * math.pi / 16)
    ring = torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)
    left, right = 0.3 + 0.15 * ring, 0.7 + 0.15 * ring
    logits = contours_to_logits(torch.cat([left, right])[None], [16, 16], [2, 1], 4, (40, 40))
    pred = logits.argmax(1)[0]
    assert pred[12, 12] == 2 and pred[28, 28] == 1 and pred[0, 0] == 0
    assert (pred != 3).all()


def test_rasteriser_gradient_moves_vertices() -> None:
    landmarks = (0.5 + 0.2 * torch.randn(1, 12, 2).clamp(-1, 1)).requires_grad_()
    contours_to_logits(landmarks, [12], [1], 2, (24, 24))[:, 1].sum().backward()
    assert landmarks.grad is not None and landmarks.grad.abs().sum() > 0


# ---- models -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 64, 48)])
def test_hybridgnet_forward_backward(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = create_model("hybridgnet", spatial_dims=2, in_channels=shape[1], out_channels=3)
    out = net(torch.randn(shape))
    assert out["logits"].shape == (shape[0], 3, *shape[2:])
    assert out["landmarks"].shape == (shape[0], 2 * 64, 2)
    assert ((out["landmarks"] > 0) & (out["landmarks"] < 1)).all()
    loss = out["logits"].square().mean() + net.aux_loss(out, {"landmarks": torch.rand(shape[0], 128, 2)})
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_hybridgnet_custom_contours_and_dims() -> None:
    net = create_model(
        "hybridgnet",
        spatial_dims=2,
        in_channels=1,
        out_channels=3,
        contour_sizes=(44, 50, 26),
        contour_classes=(1, 1, 2),
    )
    assert net(torch.randn(1, 1, 32, 32))["landmarks"].shape == (1, 120, 2)
    with pytest.raises(ValueError):
        create_model("hybridgnet", spatial_dims=3, in_channels=1, out_channels=2)


def test_hybridgnet_aux_loss() -> None:
    net = create_model("hybridgnet", spatial_dims=2, in_channels=1, out_channels=2, nodes_per_contour=16)
    truth = torch.rand(2, 16, 2)
    assert float(net.aux_loss({"landmarks": truth}, {"landmarks": truth.clone()})) == 0.0
    assert float(net.aux_loss({"landmarks": truth + 0.01}, {"landmarks": truth})) > 0.0
    assert float(net.aux_loss({"landmarks": truth}, {"image": truth})) == 0.0
    with pytest.raises(ValueError):
        net.aux_loss({"landmarks": truth}, {"landmarks": truth[:, :8]})


@pytest.mark.parametrize(
    ("spatial_dims", "shape", "graph"),
    [(2, (2, 1, 32, 32), "grid"), (2, (1, 2, 36, 40), "knn"), (3, (1, 1, 16, 16, 16), "grid")],
)
def test_hybridgnet_dense_forward_backward(spatial_dims: int, shape: tuple[int, ...], graph: str) -> None:
    torch.manual_seed(0)
    net = create_model(
        "hybridgnet_dense", spatial_dims=spatial_dims, in_channels=shape[1], out_channels=3, graph=graph
    )
    y = net(torch.randn(shape))
    assert y.shape == (shape[0], 3, *shape[2:])
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_hybridgnet_overfits_an_ellipse() -> None:
    """Dense (Dice + CE) and landmark losses fit one off-centre ellipse and its contour."""
    torch.manual_seed(0)
    size, n = 32, 32
    cx, cy, rx, ry = 0.38, 0.62, 0.22, 0.14
    theta = torch.arange(n) * (2 * math.pi / n)
    landmarks = torch.stack([cx + rx * torch.cos(theta), cy + ry * torch.sin(theta)], dim=-1)[None]
    centres = (torch.arange(size) + 0.5) / size
    gy, gx = torch.meshgrid(centres, centres, indexing="ij")
    label = (((gx - cx) / rx) ** 2 + ((gy - cy) / ry) ** 2 <= 1).long()[None, None]
    image = label.float() + 0.3 * torch.randn(1, 1, size, size)
    batch = {"image": image, "label": label, "landmarks": landmarks}
    net = create_model("hybridgnet", spatial_dims=2, in_channels=1, out_channels=2, nodes_per_contour=n)
    loss_fn = DiceCELoss(softmax=True, to_onehot_y=True)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(30):
        out = net(image)
        loss = loss_fn(out["logits"], label) + net.aux_loss(out, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net(image)["logits"].argmax(1, keepdim=True)
    dice = 2 * float((pred * label).sum()) / float(pred.sum() + label.sum())
    assert dice > 0.85
