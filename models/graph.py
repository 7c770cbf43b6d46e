"""GNN-decoder family: HybridGNet (landmark contours) and a dense grid-graph U-Net variant.

HybridGNet: Gaggion et al., "Improving anatomical plausibility in medical image segmentation via
hybrid graph neural networks: applications to chest x-ray analysis", IEEE TMI 2022,
https://arxiv.org/abs/2203.10977. A CNN encoder compresses the image into a latent vector; a
Chebyshev graph-convolution decoder unfolds it over a fixed template graph (one closed contour
per organ), coarse to fine with graph unpooling, into landmark coordinates. Image-to-graph skip
connections (HybridGNet 2 IGSC) sample encoder feature maps at the node positions predicted so
far (``F.grid_sample``) and append them to the node features. The contours are rasterised
differentiably (:mod:`models.layers.contour_raster`) into logits, so pixel losses and metrics apply;
``aux_loss`` adds an L2 landmark loss when the batch provides ``"landmarks"``.

``hybridgnet_dense`` keeps the graph idea but decodes densely: a residual U-Net whose coarsest
feature grids are graphs (grid or feature k-NN) passed through Chebyshev graph convolutions,
so the family has a row on every 2D and 3D dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetResBlock
from torch import nn

from models.layers.contour_raster import contours_to_logits
from models.layers.graph import (
    ChebGraphConv,
    GraphResBlock,
    GridGraphMixer,
    contour_sizes_at,
    contour_unpool_matrix,
    cycle_graph,
)
from models.layers.mixer_unet import MixerUNet
from models.registry import register_model


def _circle_template(sizes: Sequence[int], radius: float) -> torch.Tensor:
    """``(sum(sizes), 2)`` nodes on a centred circle per contour, in ``[0, 1]`` coordinates."""
    pts = []
    for n in sizes:
        angle = torch.arange(n, dtype=torch.float32) * (2 * torch.pi / n)
        pts.append(0.5 + radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1))
    return torch.cat(pts)


def _sample(feat: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Bilinear features ``(B, N, C)`` of ``feat (B, C, H, W)`` at ``pos (B, N, 2)`` in [0, 1]."""
    grid = (2 * pos - 1).unsqueeze(2)  # (B, N, 1, 2), (x, y) order as grid_sample expects
    return F.grid_sample(feat, grid, align_corners=False, padding_mode="border")[..., 0].transpose(1, 2)


@register_model(
    "hybridgnet",
    family="gnn",
    dims=(2,),
    description="HybridGNet: CNN encoder + Chebyshev graph decoder of organ contours (soft-rasterised)",
    paper="https://arxiv.org/abs/2203.10977",
    options=(
        "contour_sizes contour_classes nodes_per_contour features latent_dim pool_size graph_channels "
        "cheb_order template_radius temperature landmark_weight norm"
    ),
)
class HybridGNet(nn.Module):
    """CNN encoder -> latent -> Chebyshev graph decoder -> contours -> soft-mask logits (2D only).

    Defaults: image-to-graph skips, one 64-node contour per foreground class.

    Args:
        spatial_dims: 2 (the contours are drawn on a plane).
        in_channels: image channels.
        out_channels: classes incl. background.
        contour_sizes: nodes per closed contour (organ); default one contour of
            ``nodes_per_contour`` nodes per foreground class.
        contour_classes: class drawn by each contour (several contours may draw one class);
            default contour ``c`` draws class ``c + 1``.
        nodes_per_contour: used when ``contour_sizes`` is not given.
        features: CNN encoder channels per level (level ``j > 0`` halves the resolution).
        latent_dim: size of the linear bottleneck.
        pool_size: the deepest feature map is average-pooled to ``pool_size ** 2`` cells before
            the bottleneck (so any input size works).
        graph_channels: node feature widths, coarse to fine; level ``l`` has contours
            ``2 ** (len - 1 - l)`` times coarser than the output.
        cheb_order: Chebyshev order ``K``.
        template_radius: radius of the initial circle every contour starts from (the decoder
            predicts positions relative to it).
        temperature: soft-mask softness in pixels.
        landmark_weight: weight of the L2 landmark term in :meth:`aux_loss`.
        norm: MONAI norm of the encoder blocks.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        contour_sizes: Sequence[int] | None = None,
        contour_classes: Sequence[int] | None = None,
        nodes_per_contour: int = 64,
        features: Sequence[int] = (16, 32, 64, 64),
        latent_dim: int = 64,
        pool_size: int = 4,
        graph_channels: Sequence[int] = (32, 32, 16),
        cheb_order: int = 3,
        template_radius: float = 0.25,
        temperature: float = 1.0,
        landmark_weight: float = 100.0,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError("hybridgnet is 2D only")
        sizes = list(contour_sizes or [nodes_per_contour] * (out_channels - 1))
        classes = list(contour_classes or range(1, len(sizes) + 1))
        if len(classes) != len(sizes) or not all(0 < c < out_channels for c in classes):
            raise ValueError(f"contour_classes {classes} must give a class 1..{out_channels - 1} per contour")
        if len(graph_channels) > len(features):
            raise ValueError("need at least as many encoder levels as graph levels")
        self.out_channels, self.sizes, self.classes = out_channels, sizes, classes
        self.temperature, self.landmark_weight = temperature, landmark_weight
        levels = len(graph_channels)
        self.level_sizes = [contour_sizes_at(sizes, levels - 1 - lv) for lv in range(levels)]
        # the skip of graph level l > 0 comes from encoder level len(features) - 1 - l
        self.skip_levels = [len(features) - 1 - lv for lv in range(levels)]

        self.encoder = nn.ModuleList(
            UnetResBlock(2, cin, cout, kernel_size=3, stride=1 if j == 0 else 2, norm_name=norm)
            for j, (cin, cout) in enumerate(zip([in_channels, *features[:-1]], features))
        )
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.to_latent = nn.Linear(features[-1] * pool_size**2, latent_dim)
        n0 = sum(self.level_sizes[0])
        self.to_nodes = nn.Linear(latent_dim, n0 * graph_channels[0])
        self.act = nn.ELU()
        self.blocks = nn.ModuleList(GraphResBlock(c, cheb_order) for c in graph_channels)
        self.pos_heads = nn.ModuleList(ChebGraphConv(c, 2, cheb_order) for c in graph_channels)
        self.merges = nn.ModuleList(
            ChebGraphConv(
                graph_channels[lv - 1] + features[self.skip_levels[lv]] + 2, graph_channels[lv], cheb_order
            )
            for lv in range(1, levels)
        )
        for lv, lsizes in enumerate(self.level_sizes):
            self.register_buffer(f"edges{lv}", cycle_graph(lsizes), persistent=False)
            template = _circle_template(lsizes, template_radius)
            self.register_buffer(f"template{lv}", torch.logit(template), persistent=False)
            if lv:
                unpool = contour_unpool_matrix(self.level_sizes[lv - 1], lsizes)
                self.register_buffer(f"unpool{lv}", unpool, persistent=False)
        for head in self.pos_heads:  # start every level from the template circle
            for p in head.parameters():
                nn.init.zeros_(p)

    def _positions(self, lv: int, h: torch.Tensor) -> torch.Tensor:
        """Node positions ``(B, N_l, 2)`` in (0, 1): the template moved by the level's head."""
        return torch.sigmoid(
            getattr(self, f"template{lv}") + self.pos_heads[lv](h, getattr(self, f"edges{lv}"))
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (B, in_channels, H, W)`` -> ``{"logits": (B, out_channels, H, W),
        "landmarks": (B, N, 2)}`` with landmarks ``(x, y)`` in [0, 1] (contours concatenated)."""
        feats = []
        h = x
        for block in self.encoder:
            h = block(h)
            feats.append(h)
        latent = self.act(self.to_latent(self.pool(h).flatten(1)))
        h = self.act(self.to_nodes(latent)).view(x.shape[0], sum(self.level_sizes[0]), -1)
        h = self.blocks[0](h, self.edges0)
        for lv in range(1, len(self.blocks)):
            unpool, edges = getattr(self, f"unpool{lv}"), getattr(self, f"edges{lv}")
            pos = unpool @ self._positions(lv - 1, h)  # coarse positions, interpolated
            h = unpool @ h
            skip = _sample(feats[self.skip_levels[lv]], pos)
            h = self.act(self.merges[lv - 1](torch.cat([h, skip, pos], dim=-1), edges))
            h = self.blocks[lv](h, edges)
        landmarks = self._positions(len(self.blocks) - 1, h)
        logits = contours_to_logits(
            landmarks, self.sizes, self.classes, self.out_channels, x.shape[-2:], self.temperature
        )
        return {"logits": logits, "landmarks": landmarks}

    def aux_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """``landmark_weight`` x mean squared landmark error when ``batch["landmarks"]`` exists.

        ``batch["landmarks"]``: ``(B, N, 2)`` ``(x, y)`` in [0, 1], organs concatenated in the
        order of ``contour_sizes``; non-finite entries (missing landmarks) are ignored.
        Returns 0 when the batch has no landmarks.
        """
        pred = outputs["landmarks"]
        target = batch.get("landmarks")
        if target is None:
            return pred.new_zeros(())
        target = target.to(pred)
        if target.shape != pred.shape:
            raise ValueError(f"landmarks {tuple(target.shape)} do not match the model's {tuple(pred.shape)}")
        valid = torch.isfinite(target)
        if not valid.any():
            return pred.new_zeros(())
        err = (pred - torch.nan_to_num(target)).pow(2)
        return self.landmark_weight * err[valid].mean()


@register_model(
    "hybridgnet_dense",
    family="gnn",
    dims=(2, 3),
    description="Residual U-Net whose coarsest feature grids run through Chebyshev graph convs",
    paper="https://arxiv.org/abs/2203.10977",
    options="features graph_levels graph_depth cheb_order graph knn_k norm",
)
def hybridgnet_dense(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    features: Sequence[int] = (16, 32, 64, 128),
    graph_levels: int = 2,
    graph_depth: int = 2,
    cheb_order: int = 3,
    graph: str = "grid",
    knn_k: int = 8,
    norm: str = "instance",
) -> nn.Module:
    """Dense graph U-Net: graph residual blocks on the bottleneck grid and the next
    ``graph_levels - 1`` decoder grids (nodes = grid cells, ``graph`` = ``grid`` or ``knn``)."""
    last = len(features) - 1
    if not 1 <= graph_levels <= last + 1:
        raise ValueError(f"graph_levels must be in 1..{last + 1}")
    keys = [f"enc{last}"] + [f"dec{j}" for j in range(last - 1, last - graph_levels, -1)]
    level = [last] + list(range(last - 1, last - graph_levels, -1))
    mixers = {
        key: GridGraphMixer(features[j], depth=graph_depth, K=cheb_order, graph=graph, knn_k=knn_k)
        for key, j in zip(keys, level)
    }
    return MixerUNet(spatial_dims, in_channels, out_channels, features=features, mixers=mixers, norm=norm)
