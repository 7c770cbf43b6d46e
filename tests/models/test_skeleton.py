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

from models.skeleton import Skeletonize, simple_point_map, skeletonize


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
    elif kind == 2 and d == 3:  # torus
        rho = np.sqrt((grid[0] - centre[0]) ** 2 + (grid[1] - centre[1]) ** 2)
        mask = np.sqrt((rho - 0.55 * rmax) ** 2 + (grid[2] - centre[2]) ** 2) < 0.3 * rmax
    elif kind == 2:  # annulus with random holes punched
        mask = (r < 0.9 * rmax) & ~(noise > noise.std())
    return mask


def _has_full_block(skel: np.ndarray) -> bool:
    """True if some 2x2 (2D) or 2x2x2 (3D) block is entirely foreground."""
    d = skel.ndim
    block = np.ones((2,) * d, dtype=int)
    return bool((ndi.correlate(skel.astype(int), block, mode="constant") == 2**d).any())


CASES = [(2, 24, 12), (3, 14, 10)]  # (dims, size, number of shapes)


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
