"""Menten et al. (ICCV 2023) skeletonization: topology, containment, thinness, gradients.

Betti numbers are computed independently of the implementation: beta0 with scipy labelling
(8/26-connectivity), the Euler characteristic with skimage, beta2 as enclosed background
components (6-connectivity), beta1 = beta0 + beta2 - chi.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage.measure import euler_number

from models.layers.skeleton import Skeletonize, simple_point_map, skeletonize


def betti(mask: np.ndarray) -> tuple[int, int, int]:
    """(beta0, beta1, beta2) of a binary image with 8/26-connected foreground."""
    d = mask.ndim
    mask = np.pad(mask.astype(bool), 1)
    b0 = ndi.label(mask, structure=np.ones((3,) * d))[1]
    b2 = ndi.label(~mask, structure=ndi.generate_binary_structure(d, 1))[1] - 1 if d == 3 else 0
    chi = euler_number(mask, connectivity=d)
    return b0, b0 + b2 - chi, b2


def _random_shape(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Blobs with holes/tunnels/loops: thresholded smoothed noise, optionally minus spheres."""
    d = len(shape)
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.0, 2.5))
    mask = noise > rng.uniform(-0.1, 0.3) * noise.std()
    grid = np.indices(shape).astype(float)
    kind = rng.integers(3)
    centre = np.array(shape, float)[(slice(None),) + (None,) * d] / 2 - 0.5
    r = np.sqrt(((grid - centre) ** 2).sum(0))
    rmax = min(shape) / 2 - 1
    if kind == 1:  # thick ring / hollow ball (hole in 2D, cavity in 3D) merged with blobs
        mask |= (r > 0.4 * rmax) & (r < 0.8 * rmax)
    elif kind == 2 and d == 3:  # torus, randomly sized, plus a few blobs
        rho = np.sqrt((grid[0] - centre[0]) ** 2 + (grid[1] - centre[1]) ** 2)
        tube = np.sqrt((rho - rng.uniform(0.45, 0.6) * rmax) ** 2 + (grid[2] - centre[2]) ** 2)
        mask = (tube < rng.uniform(0.2, 0.35) * rmax) | (noise > 1.5 * noise.std())
    elif kind == 2:  # annulus with random holes punched
        mask = (r < 0.9 * rmax) & ~(noise > noise.std())
    return mask


def _has_full_block(skel: np.ndarray) -> bool:
    """True if some 2x2 (2D) or 2x2x2 (3D) block is entirely foreground."""
    d = skel.ndim
    block = np.ones((2,) * d, dtype=int)
    return bool((ndi.correlate(skel.astype(int), block, mode="constant") == 2**d).any())


CASES = [(2, 24, 30), (3, 14, 24)]  # (dims, size, number of shapes)


@pytest.mark.parametrize(("dims", "size", "n_shapes"), CASES)
def test_skeleton_preserves_topology_and_is_thin(dims: int, size: int, n_shapes: int) -> None:
    rng = np.random.default_rng(dims)
    masks = [_random_shape(rng, (size,) * dims) for _ in range(n_shapes)]
    x = torch.tensor(np.stack(masks), dtype=torch.float32).unsqueeze(1)
    skel = skeletonize(x, num_iter=size // 2, probabilistic=False).squeeze(1).numpy() > 0.5
    for mask, sk in zip(masks, skel, strict=True):
        assert betti(sk) == betti(mask)
        assert not (sk & ~mask).any(), "skeleton leaves the input"
        assert not _has_full_block(sk), "skeleton is not thin"
        if mask.sum() > 2**dims:
            assert sk.sum() < mask.sum()


def _simple_reference(window: np.ndarray) -> bool:
    """Simple-point test of the centre of a 3^d window (8/4 in 2D, 26/6 in 3D).

    Foreground: one 8/26-component in the punctured neighbourhood. Background: one 4/6-component
    among the background of N8 (2D) / N18 (3D) that touches a face neighbour of the centre.
    """
    d = window.ndim
    fg = window.astype(bool)
    fg[(1,) * d] = False
    if ndi.label(fg, structure=np.ones((3,) * d))[1] != 1:
        return False
    offsets = np.indices((3,) * d) - 1
    l1 = np.abs(offsets).sum(0)
    region = (l1 > 0) & (l1 <= 2) if d == 3 else l1 > 0
    lab = ndi.label(~window.astype(bool) & region, structure=ndi.generate_binary_structure(d, 1))[0]
    faces = {lab[tuple(idx)] for idx in np.argwhere(l1 == 1)} - {0}
    return len(faces) == 1


@pytest.mark.parametrize("dims", [2, 3])
def test_simple_point_map_matches_reference(dims: int) -> None:
    rng = np.random.default_rng(7)
    if dims == 2:  # all 256 neighbourhoods
        bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
        windows = np.insert(bits, 4, 1, axis=1).reshape(-1, 3, 3)
    else:
        density = rng.uniform(0.15, 0.85, size=(1500, 1, 1, 1))
        windows = (rng.random((1500, 3, 3, 3)) < density).astype(int)
        windows[:, 1, 1, 1] = 1
    x = torch.tensor(windows, dtype=torch.float32).unsqueeze(1)
    got = simple_point_map(x).reshape(-1).numpy() > 0.5
    want = np.array([_simple_reference(w) for w in windows])
    assert want.any() and (~want).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dims", [2, 3])
def test_skeleton_gradients_flow(dims: int) -> None:
    torch.manual_seed(0)
    prob = torch.rand((2, 1) + (10,) * dims, requires_grad=True)
    module = Skeletonize(num_iter=3, probabilistic=True)
    skel = module(prob)
    assert set(torch.unique(skel.detach()).tolist()) <= {0.0, 1.0}
    (skel * torch.randn_like(skel)).sum().backward()
    assert prob.grad is not None and torch.isfinite(prob.grad).all()
    assert prob.grad.abs().sum() > 0


def test_probabilistic_skeleton_of_binary_input_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    x = torch.tensor(_random_shape(rng, (20, 20)), dtype=torch.float32)[None, None]
    a = skeletonize(x, num_iter=10, probabilistic=True)
    b = skeletonize(x, num_iter=10, probabilistic=False)
    assert torch.equal(a, b)


def test_skeleton_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        skeletonize(torch.zeros(1, 2, 8, 8))
