"""Graph building blocks for the GNN-decoder family: template graphs and Chebyshev convolutions.

- Chebyshev spectral graph convolution: Defferrard et al., NeurIPS 2016,
  https://arxiv.org/abs/1606.09375. :class:`ChebGraphConv` wraps ``torch_geometric``'s
  ``ChebConv`` and falls back to an equivalent pure-PyTorch version when the import fails.
- Graphs: closed contours (cycles, one per organ) with a linear-interpolation unpooling matrix
  between resolutions, and regular grid graphs (4-/6-neighbourhood) of a feature map.

Node features are batched as ``(B, N, F)``; ``edge_index`` is ``(2, E)`` int64 with both
directions of every undirected edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import torch
from torch import nn

from models.layers.tokens import from_tokens, to_tokens

try:
    from torch_geometric.nn import ChebConv as _PygChebConv
except Exception:  # noqa: BLE001 - any broken install falls back to the pure-PyTorch version
    _PygChebConv = None


def cycle_graph(sizes: Sequence[int]) -> torch.Tensor:
    """Edges of disjoint closed contours: contour ``c`` has ``sizes[c]`` nodes, numbered after
    those of contours ``< c``, node ``j`` joined to ``j + 1`` (mod size).

    Returns:
        ``edge_index (2, 2 * sum(sizes))``.
    """
    src, dst, start = [], [], 0
    for n in sizes:
        idx = torch.arange(n) + start
        nxt = torch.roll(idx, -1)
        src += [idx, nxt]
        dst += [nxt, idx]
        start += n
    return torch.stack([torch.cat(src), torch.cat(dst)])


@cache
def _grid_graph(shape: tuple[int, ...]) -> torch.Tensor:
    ids = torch.arange(math.prod(shape)).view(shape)
    src, dst = [], []
    for axis in range(len(shape)):
        a = ids.narrow(axis, 0, shape[axis] - 1).flatten()
        b = ids.narrow(axis, 1, shape[axis] - 1).flatten()
        src += [a, b]
        dst += [b, a]
    if not src:
        return torch.zeros(2, 0, dtype=torch.long)
    return torch.stack([torch.cat(src), torch.cat(dst)])


def grid_graph(shape: Sequence[int]) -> torch.Tensor:
    """Edges of the regular grid over ``shape`` (4-neighbourhood in 2D, 6 in 3D), raster order.

    Returns:
        ``edge_index (2, E)`` (cached per shape).
    """
    return _grid_graph(tuple(int(s) for s in shape))


def contour_sizes_at(sizes: Sequence[int], level: int, min_nodes: int = 4) -> list[int]:
    """Contour sizes ``level`` halvings coarser than ``sizes`` (rounded up, at least ``min_nodes``)."""
    return [max(math.ceil(n / 2**level), min(min_nodes, n)) for n in sizes]


def contour_unpool_matrix(coarse: Sequence[int], fine: Sequence[int]) -> torch.Tensor:
    """Linear interpolation along each closed contour from ``coarse`` to ``fine`` node counts.

    Fine node ``j`` of a contour sits at arc parameter ``j / n_fine``; it is interpolated between
    the two coarse nodes around ``j * n_coarse / n_fine`` (wrapping around the contour).

    Returns:
        ``(sum(fine), sum(coarse))`` dense matrix, rows summing to 1.
    """
    mat = torch.zeros(sum(fine), sum(coarse))
    r0 = c0 = 0
    for nc, nf in zip(coarse, fine):
        pos = torch.arange(nf, dtype=torch.float64) * nc / nf
        lo = pos.floor().long()
        w = (pos - lo).float()
        rows = torch.arange(nf) + r0
        mat[rows, lo + c0] += 1 - w
        mat[rows, (lo + 1) % nc + c0] += w
        r0, c0 = r0 + nf, c0 + nc
    return mat


def _scaled_laplacian(edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype):
    """Edges and weights of ``L~ = 2 L_sym / lambda_max - I`` with ``lambda_max = 2``, i.e.
    ``-D^{-1/2} A D^{-1/2}`` (the zero diagonal is dropped)."""
    src, dst = edge_index
    keep = src != dst
    src, dst = src[keep], dst[keep]
    deg = torch.zeros(num_nodes, dtype=dtype, device=edge_index.device)
    deg.index_add_(0, src, torch.ones_like(src, dtype=dtype))
    inv = deg.clamp_min(1).rsqrt()
    return src, dst, -inv[src] * inv[dst]


class ChebGraphConv(nn.Module):
    """Chebyshev graph convolution of order ``K`` on batched node features.

    ``out = sum_k T_k(L~) x W_k + b`` with ``T_0 = I``, ``T_1 = L~``,
    ``T_k = 2 L~ T_{k-1} - T_{k-2}`` and the symmetric normalised, rescaled Laplacian ``L~``
    (``lambda_max = 2``). Uses ``torch_geometric.nn.ChebConv`` when it imports (``use_pyg``),
    otherwise the same maths in plain PyTorch (the two agree; see the tests).

    Args:
        in_channels, out_channels: node feature widths.
        K: Chebyshev order (``K`` hops).
        use_pyg: prefer ``torch_geometric`` when importable.
    """

    def __init__(self, in_channels: int, out_channels: int, K: int = 3, use_pyg: bool = True) -> None:
        super().__init__()
        self.K = K
        if use_pyg and _PygChebConv is not None:
            self.pyg = _PygChebConv(in_channels, out_channels, K=K)
        else:
            self.pyg = None
            self.lins = nn.ModuleList(nn.Linear(in_channels, out_channels, bias=False) for _ in range(K))
            self.bias = nn.Parameter(torch.zeros(out_channels))
            for lin in self.lins:
                nn.init.xavier_uniform_(lin.weight)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """``x (B, N, F_in)`` (or ``(N, F_in)``), ``edge_index (2, E)`` -> ``(B, N, F_out)``."""
        if self.pyg is not None:
            return self.pyg(x, edge_index)
        src, dst, w = _scaled_laplacian(edge_index, x.shape[-2], x.dtype)

        def lap(t: torch.Tensor) -> torch.Tensor:
            msg = t.index_select(-2, src) * w[:, None]
            return torch.zeros_like(t).index_add_(-2, dst, msg)

        t_prev, t_cur = x, None
        out = self.lins[0](x)
        if self.K > 1:
            t_cur = lap(x)
            out = out + self.lins[1](t_cur)
        for k in range(2, self.K):
            t_prev, t_cur = t_cur, 2 * lap(t_cur) - t_prev
            out = out + self.lins[k](t_cur)
        return out + self.bias


class GraphResBlock(nn.Module):
    """Two Chebyshev convolutions with LayerNorm + ELU and a residual connection.

    Args:
        channels: node feature width (in and out).
        K: Chebyshev order.
    """

    def __init__(self, channels: int, K: int = 3) -> None:
        super().__init__()
        self.conv1 = ChebGraphConv(channels, channels, K)
        self.conv2 = ChebGraphConv(channels, channels, K)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """``x (B, N, C)`` -> ``(B, N, C)``."""
        h = self.act(self.norm1(self.conv1(x, edge_index)))
        h = self.norm2(self.conv2(h, edge_index))
        return self.act(x + h)


def knn_graph(x: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetric k-nearest-neighbour graph in feature space, batched as one disjoint graph.

    Args:
        x: ``(B, N, F)`` node features (distances are taken without gradient).
        k: neighbours per node (clipped to ``N - 1``).

    Returns:
        ``edge_index (2, E)`` over the ``B * N`` nodes of the flattened batch.
    """
    b, n, _ = x.shape
    k = min(k, n - 1)
    with torch.no_grad():
        d = torch.cdist(x, x)
        d.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
        nbr = d.topk(k, dim=-1, largest=False).indices  # (B, N, k)
        offset = (torch.arange(b, device=x.device) * n)[:, None, None]
        src = (torch.arange(n, device=x.device)[None, :, None] + offset).expand(b, n, k).flatten()
        dst = (nbr + offset).flatten()
        edges = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
        return torch.unique(edges, dim=1)


class GridGraphMixer(nn.Module):
    """Treat the cells of a feature map as graph nodes and run graph residual blocks over them.

    ``(B, C, *spatial)`` -> nodes ``(B, prod(spatial), C)`` -> ``depth`` :class:`GraphResBlock`
    -> back onto the grid -> ``1x1`` projection, added to the input.

    Args:
        channels: feature channels ``C``.
        depth: graph residual blocks.
        K: Chebyshev order.
        graph: ``"grid"`` (4-neighbourhood in 2D, 6 in 3D) or ``"knn"`` (k nearest neighbours
            in the feature space of the mixer's input, built per sample and forward pass).
        knn_k: neighbours for ``graph="knn"``.
    """

    def __init__(
        self, channels: int, depth: int = 2, K: int = 3, graph: str = "grid", knn_k: int = 8
    ) -> None:
        super().__init__()
        if graph not in ("grid", "knn"):
            raise ValueError(f"graph must be 'grid' or 'knn', not {graph!r}")
        self.graph, self.knn_k = graph, knn_k
        self.blocks = nn.ModuleList(GraphResBlock(channels, K) for _ in range(depth))
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, *spatial)`` -> ``(B, C, *spatial)``."""
        b, c, *spatial = x.shape
        h = to_tokens(x)  # (B, N, C)
        if self.graph == "grid":
            edges = grid_graph(spatial).to(x.device)
        else:
            edges = knn_graph(h, self.knn_k)
            h = h.reshape(1, -1, c)  # one disjoint graph over the batch
        for block in self.blocks:
            h = block(h, edges)
        h = self.proj(h).reshape(b, -1, c)
        return x + from_tokens(h, spatial)
