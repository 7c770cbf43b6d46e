"""Topology-preserving differentiable skeletonization (Menten et al., ICCV 2023).

Reference: M. J. Menten et al., "A skeletonization algorithm for gradient-based optimization",
ICCV 2023, https://arxiv.org/abs/2309.02527. This is an independent, dimension-agnostic
re-implementation of the algorithm described there (2D and 3D with the same code):

1. *Stochastic binarisation* (reparameterisation trick with logistic noise, i.e. a Gumbel-softmax
   over {background, foreground}) followed by a straight-through estimator, so the skeleton of a
   probability map is binary in the forward pass and differentiable in the backward pass.
2. Repeated *boundary peeling*: in each iteration the end points (voxels with at most one
   foreground neighbour) are frozen, then the image is visited subfield by subfield (the ``2^d``
   parity classes of the grid; two voxels of one subfield are never neighbours, so deleting them
   in parallel is equivalent to deleting them one after the other) and every *simple* voxel of the
   subfield that is not an end point is deleted.
3. *Simple-point detection by the Euler characteristic*: a voxel ``p`` is deletable iff it is a
   boundary point (one of its ``2d`` face neighbours is background) and switching it off does not
   change the Euler characteristic of its ``3^d`` neighbourhood. The change is local: only the
   cubical cells of the (2d-connected) background that contain ``p`` appear, so
   ``delta_chi = 1 - #edges + #squares - #cubes`` counted over background cells through ``p``.
   Each count is one convolution; all operations are convolutions, ReLUs and products, so the
   whole algorithm runs on GPU and back-propagates.

Foreground uses 8-connectivity (2D) / 26-connectivity (3D), background 4 / 6. Outside the image
counts as background.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-8


def _conv(x: torch.Tensor, weight: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """``conv2d`` / ``conv3d`` on ``(N, 1, *spatial)`` without padding."""
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    return conv(x, weight.to(dtype=x.dtype, device=x.device), stride=stride)


def _straight_through(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Hard ``x > threshold`` in the forward pass, identity gradient in the backward pass."""
    return (x.detach() > threshold).to(x.dtype) - x.detach() + x


def _euler_kernels(spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kernels for the background cubical cells that contain the centre voxel.

    Returns:
        ``weight (K, 1, 3, ..., 3)`` selecting the *other* voxels of each cell, ``size (K,)``
        their number, and ``sign (K,)`` = ``(-1)^dim(cell)``. ``K = 3^d - 1`` (8 in 2D, 26 in
        3D): 2d edges, then squares, then (3D) cubes.
    """
    weights, sizes, signs = [], [], []
    centre = (1,) * spatial_dims
    for k in range(1, spatial_dims + 1):
        for axes in itertools.combinations(range(spatial_dims), k):
            for direction in itertools.product((-1, 1), repeat=k):
                w = torch.zeros((3,) * spatial_dims)
                for step in itertools.product((0, 1), repeat=k):
                    idx = list(centre)
                    for ax, d, s in zip(axes, direction, step, strict=True):
                        idx[ax] += d * s
                    w[tuple(idx)] = 1.0
                w[centre] = 0.0
                weights.append(w)
                sizes.append(2**k - 1)
                signs.append((-1.0) ** k)
    return (
        torch.stack(weights).unsqueeze(1),
        torch.tensor(sizes, dtype=torch.float32),
        torch.tensor(signs, dtype=torch.float32),
    )


def _neighbour_kernel(spatial_dims: int, faces_only: bool = False) -> torch.Tensor:
    """``(1, 1, 3, ..., 3)`` kernel over the full (or only the face) neighbours of the centre."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(3)] * spatial_dims, indexing="ij"))
    dist = (grid - 1).abs().sum(0)
    w = (dist == 1).float() if faces_only else (dist > 0).float()
    return w[None, None]


def endpoint_map(img: torch.Tensor) -> torch.Tensor:
    """Soft indicator of voxels with at most one 8/26-neighbour.

    Args:
        img: ``(N, 1, *spatial)`` binary (or soft) image in ``[0, 1]``, 2 or 3 spatial dims.

    Returns:
        ``(N, 1, *spatial)``: 1 where the number of foreground neighbours is <= 1, 0 where >= 2.
    """
    d = img.dim() - 2
    n = _conv(F.pad(img, (1, 1) * d), _neighbour_kernel(d))
    return F.hardtanh(2.0 - n, min_val=0.0, max_val=1.0)


def simple_point_map(padded: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Soft indicator of simple boundary points via the local Euler characteristic.

    Args:
        padded: ``(N, 1, *spatial)`` binary image already zero-padded by one voxel per side.
        stride: 1 for every voxel, 2 to evaluate one subfield (slice ``padded`` to its offset).

    Returns:
        ``(N, 1, *out)`` where ``out`` are the conv output sizes: 1 where deleting the centre
        voxel keeps the topology (its Euler characteristic change is 0 and it is a boundary
        point), 0 otherwise. Straight-through binarised.
    """
    d = padded.dim() - 2
    weight, size, sign = _euler_kernels(d)
    size = size.to(padded).view(1, -1, *([1] * d))
    sign = sign.to(padded).view(1, -1, *([1] * d))
    # a cell is present in the background iff all its other voxels are background
    cells = F.relu(_conv(1.0 - padded, weight, stride) - (size - 1.0))
    delta_chi = 1.0 + (sign * cells).sum(1, keepdim=True)
    euler_ok = 1.0 - F.hardtanh(delta_chi.abs(), min_val=0.0, max_val=1.0)
    n_bg_faces = _conv(1.0 - padded, _neighbour_kernel(d, faces_only=True), stride)
    boundary = F.hardtanh(n_bg_faces, min_val=0.0, max_val=1.0)
    simple = euler_ok * boundary
    if d == 3:  # in 2D the Euler test alone is exact; in 3D tunnels can offset a split
        simple = simple * _one_component(padded, stride, candidates=simple.detach() > 0.5)
    return _straight_through(simple)


def _neighbourhood_graph(spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot kernels picking each of the ``3^d - 1`` neighbours and their adjacency matrix."""
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=spatial_dims) if any(o)]
    pick = torch.zeros(len(offsets), 1, *(3,) * spatial_dims)
    for i, o in enumerate(offsets):
        pick[(i, 0, *(c + 1 for c in o))] = 1.0
    pos = torch.tensor(offsets)
    adj = ((pos[:, None] - pos[None]).abs().amax(-1) == 1).float()
    return pick, adj


@torch.no_grad()
def _one_component(padded: torch.Tensor, stride: int, candidates: torch.Tensor) -> torch.Tensor:
    """1 where the foreground of the punctured neighbourhood is a single 8/26-component.

    Label propagation from the first foreground neighbour inside each ``3^d`` window, with
    matrix products over the fixed neighbour adjacency; stops when nothing changes. Only the
    ``candidates`` (points that passed the cheaper tests) are propagated; others get 0.

    Args:
        padded: ``(N, 1, *spatial)`` binary image padded by one voxel.
        stride: as in :func:`simple_point_map`.
        candidates: ``(N, 1, *out)`` bool mask of the windows to test.

    Returns:
        ``(N, 1, *out)`` in {0, 1}.
    """
    pick, adj = _neighbourhood_graph(padded.dim() - 2)
    nb = _conv(padded, pick, stride) > 0.5  # (N, K, *out)
    k = nb.shape[1]
    flat = candidates.reshape(-1)
    rows = torch.nonzero(flat).squeeze(1)
    x = nb.movedim(1, -1).reshape(-1, k)[rows].to(padded.dtype)
    reached = x * (torch.cumsum(x, dim=1) == 1).to(x.dtype)
    adj = adj.to(x)
    for _ in range(k):
        grown = x * ((reached + reached @ adj) > 0).to(x.dtype)
        if torch.equal(grown, reached):
            break
        reached = grown
    ok = (reached.sum(1) == x.sum(1)) & (x.sum(1) > 0)
    out = torch.zeros(flat.shape, dtype=padded.dtype, device=padded.device)
    out[rows] = ok.to(padded.dtype)
    return out.reshape(candidates.shape)


def stochastic_binarize(prob: torch.Tensor, beta: float, tau: float) -> torch.Tensor:
    """Binarise probabilities with logistic (Gumbel-difference) noise and a straight-through step.

    Args:
        prob: ``(N, 1, *spatial)`` foreground probabilities in ``[0, 1]``.
        beta: noise scale (0 gives a deterministic threshold at 0.5).
        tau: temperature of the relaxed Bernoulli.

    Returns:
        Binary tensor of the same shape whose gradient is that of the relaxed sample.
    """
    logit = torch.log(prob + _EPS) - torch.log(1.0 - prob + _EPS)
    u = torch.empty_like(prob).uniform_(_EPS, 1.0 - _EPS)
    noise = torch.log(u) - torch.log(1.0 - u)
    return _straight_through(torch.sigmoid((logit + beta * noise) / tau))


def skeletonize(
    img: torch.Tensor,
    num_iter: int = 5,
    probabilistic: bool = True,
    beta: float = 0.33,
    tau: float = 1.0,
    shuffle_subfields: bool = False,
) -> torch.Tensor:
    """Differentiable topology-preserving skeleton of a binary or probability map.

    Args:
        img: ``(N, 1, H, W)`` or ``(N, 1, H, W, D)`` values in ``[0, 1]``.
        num_iter: peeling iterations; each removes at most about one voxel layer, so use at
            least the largest expected radius (in voxels) of the structures.
        probabilistic: binarise ``img`` stochastically (reparameterisation trick); if False it
            is thresholded at 0.5 (still straight-through).
        beta: logistic-noise scale of the stochastic binarisation.
        tau: temperature of the stochastic binarisation.
        shuffle_subfields: visit the ``2^d`` subfields in a random order each iteration instead
            of the fixed raster order.

    Returns:
        Skeleton, same shape as ``img``, binary in the forward pass.
    """
    d = img.dim() - 2
    if d not in (2, 3) or img.shape[1] != 1:
        raise ValueError(f"expected (N, 1, H, W[, D]), got {tuple(img.shape)}")
    img = stochastic_binarize(img, beta, tau) if probabilistic else _straight_through(img)
    offsets = list(itertools.product((0, 1), repeat=d))
    for _ in range(num_iter):
        frozen = endpoint_map(img)
        order = torch.randperm(len(offsets)).tolist() if shuffle_subfields else range(len(offsets))
        for i in order:
            off = offsets[i]
            padded = F.pad(img, (1, 1) * d)
            sub = (slice(None), slice(None), *(slice(o, None) for o in off))
            simple = simple_point_map(padded[sub], stride=2)
            field = (slice(None), slice(None), *(slice(o, None, 2) for o in off))
            delete = simple * (1.0 - frozen[field])
            img = img.clone()
            img[field] = torch.minimum(img[field].clone(), 1.0 - delete)
    return img


class Skeletonize(nn.Module):
    """``nn.Module`` around :func:`skeletonize` (Menten et al., ICCV 2023).

    Args:
        num_iter: peeling iterations (>= the largest structure radius in voxels).
        probabilistic: stochastic binarisation of soft inputs (paper default True).
        beta: logistic-noise scale.
        tau: relaxation temperature.
        shuffle_subfields: random subfield order per iteration.
    """

    def __init__(
        self,
        num_iter: int = 5,
        probabilistic: bool = True,
        beta: float = 0.33,
        tau: float = 1.0,
        shuffle_subfields: bool = False,
    ) -> None:
        super().__init__()
        self.num_iter = num_iter
        self.probabilistic = probabilistic
        self.beta = beta
        self.tau = tau
        self.shuffle_subfields = shuffle_subfields

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """``img (N, 1, *spatial)`` in ``[0, 1]`` -> binary skeleton of the same shape."""
        return skeletonize(
            img,
            num_iter=self.num_iter,
            probabilistic=self.probabilistic,
            beta=self.beta,
            tau=self.tau,
            shuffle_subfields=self.shuffle_subfields,
        )
