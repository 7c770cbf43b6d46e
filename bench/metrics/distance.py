"""Surface-distance metrics: 95th-percentile Hausdorff distance and normalised surface Dice.

Both reproduce MONAI (``compute_hausdorff_distance(percentile=95)`` and
``compute_surface_dice(use_subvoxels=False)``): the surface of a mask is its set of edge
voxels ``mask & ~binary_erosion(mask)`` (face-connected structuring element, outside the
image counts as background), and surface distances are exact Euclidean distances between
edge-voxel centres in physical units (``spacing``), from a KD-tree as in MONAI, cast to
float32 as MONAI does. Work is restricted to the bounding box of ``P ∪ G``, which gives
identical edges and distances.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import binary_erosion, generate_binary_structure
from scipy.spatial import cKDTree

from bench.metrics._convert import ArrayLike, as_binary, check_same_shape, check_spatial, spacing_tuple


def _crop_union(p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    union = p | g
    box = []
    for ax in range(p.ndim):
        nz = np.flatnonzero(union.any(axis=tuple(a for a in range(p.ndim) if a != ax)))
        box.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return p[tuple(box)], g[tuple(box)]


def _edge_coords(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    if not mask.any():
        return np.zeros((0, mask.ndim))
    edges = mask & ~binary_erosion(mask, generate_binary_structure(mask.ndim, 1), border_value=0)
    return np.argwhere(edges).astype(np.float64) * np.asarray(spacing)


def surface_distances(
    preds: ArrayLike, target: ArrayLike, *, spacing: float | Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each edge voxel of one mask to the nearest edge voxel of the other.

    Args:
        preds: ``(H, W[, D])`` binary prediction.
        target: ``(H, W[, D])`` binary reference.
        spacing: voxel size per axis (or one value for all); ``None`` means 1.

    Returns:
        ``(pred_to_target, target_to_pred)`` float32 arrays (``inf`` where the other mask is
        empty, empty arrays for an empty source mask).

    Raises:
        ValueError: on shape mismatch, non-binary input or invalid spacing.
    """
    p = as_binary(preds, "preds")
    g = as_binary(target, "target")
    check_same_shape(p, g, "preds", "target")
    check_spatial(p, "preds")
    sp = spacing_tuple(spacing, p.ndim)
    if not (p.any() or g.any()):
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    p, g = _crop_union(p, g)
    cp, cg = _edge_coords(p, sp), _edge_coords(g, sp)

    def nearest(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        if len(dst) == 0:
            return np.full(len(src), np.inf, np.float32)
        return cKDTree(dst, leafsize=32).query(src, k=1, workers=-1)[0].astype(np.float32)

    return nearest(cp, cg), nearest(cg, cp)


def _percentile(d: np.ndarray, q: float) -> float:
    t = torch.from_numpy(d)
    if t.numel() <= 2**24:
        return float(torch.quantile(t, q / 100))
    return float(np.quantile(d.astype(np.float64), q / 100))


def hd95(preds: ArrayLike, target: ArrayLike, *, spacing: float | Sequence[float] | None = None) -> float:
    """Symmetric 95th-percentile Hausdorff distance (MONAI's definition).

    ``max(q95(d(∂P → ∂G)), q95(d(∂G → ∂P)))`` with linear-interpolation quantiles.

    Empty rules: both empty → NaN; exactly one empty → ``inf`` (the distance to an empty
    set; MONAI returns NaN here, an artefact of interpolating between infinities, which
    would silently drop a missed structure from averages).

    Args:
        preds: ``(H, W[, D])`` binary prediction.
        target: ``(H, W[, D])`` binary reference.
        spacing: voxel size per axis in physical units; ``None`` means 1 (voxel units).

    Returns:
        HD95 in the units of ``spacing``.
    """
    return _hd95_compute(*surface_distances(preds, target, spacing=spacing))


def _hd95_compute(d_pg: np.ndarray, d_gp: np.ndarray) -> float:
    """HD95 from the two directed surface-distance arrays (empty rules included)."""
    if len(d_pg) == 0 and len(d_gp) == 0:
        return float("nan")
    if len(d_pg) == 0 or len(d_gp) == 0:
        return float("inf")
    return max(_percentile(d_pg, 95), _percentile(d_gp, 95))


def normalized_surface_dice(
    preds: ArrayLike,
    target: ArrayLike,
    tolerance: float,
    *,
    spacing: float | Sequence[float] | None = None,
) -> float:
    """Normalised surface Dice (Nikolov et al. 2021) counting edge voxels, as MONAI.

    ``(|{d(∂P→∂G) ≤ τ}| + |{d(∂G→∂P) ≤ τ}|) / (|∂P| + |∂G|)``.

    Empty rules (MONAI's): both empty → NaN; exactly one empty → 0.

    Args:
        preds: ``(H, W[, D])`` binary prediction.
        target: ``(H, W[, D])`` binary reference.
        tolerance: τ ≥ 0 in the units of ``spacing``.
        spacing: voxel size per axis; ``None`` means 1.

    Returns:
        NSD in [0, 1], or NaN.
    """
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"`tolerance` must be finite and >= 0, got {tolerance}.")
    return _nsd_compute(*surface_distances(preds, target, spacing=spacing), tolerance)


def _nsd_compute(d_pg: np.ndarray, d_gp: np.ndarray, tolerance: float) -> float:
    """NSD from the two directed surface-distance arrays (empty rules included)."""
    total = len(d_pg) + len(d_gp)
    if total == 0:
        return float("nan")
    tau = np.float32(tolerance)
    return float(np.count_nonzero(d_pg <= tau) + np.count_nonzero(d_gp <= tau)) / total
