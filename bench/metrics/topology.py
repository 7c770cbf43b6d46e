"""Topology metrics: Betti numbers, Betti errors and clDice, in 2D and 3D.

Betti numbers of a binary image are computed exactly and fast from connected components
(``cc3d``) plus the Euler characteristic of the cubical complex:

* β0 = number of foreground components,
* β2 (3D) = number of background components that do not touch the image border
  (cavities), counted with the dual connectivity after padding with background,
* β1 = β0 − χ (2D) or β0 + β2 − χ (3D).

The default convention is gudhi's ``CubicalComplex(top_dimensional_cells=...)`` on the
foreground: foreground 8-connected (2D) / 26-connected (3D), background 4 / 6-connected.
``connectivity=4`` (2D) or ``6`` (3D) gives the dual convention (gudhi ``vertices=``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations, product

import cc3d
import numpy as np
from skimage.morphology import skeletonize

from bench.metrics._convert import ArrayLike, as_binary, check_same_shape, check_spatial

_FULL = {2: 8, 3: 26}
_FACE = {2: 4, 3: 6}


def _resolve_connectivity(ndim: int, connectivity: int | None) -> tuple[int, int]:
    """Returns (foreground, background) connectivity for a 2D/3D image."""
    if connectivity is None or connectivity == _FULL[ndim]:
        return _FULL[ndim], _FACE[ndim]
    if connectivity == _FACE[ndim]:
        return _FACE[ndim], _FULL[ndim]
    raise ValueError(
        f"`connectivity` must be {_FULL[ndim]} or {_FACE[ndim]} for a {ndim}D image, got {connectivity}."
    )


def _euler_characteristic(mask: np.ndarray, full: bool) -> int:
    """Euler characteristic χ of the foreground cubical complex.

    For every cell type (the set ``S`` of axes along which the cell is a lattice vertex
    rather than a voxel interval) the present cells are counted with one shifted OR
    (``full``: union of closed voxels, T-construction) or AND (face connectivity, voxels as
    vertices, V-construction) per axis in ``S``; χ = Σ (−1)^dim · count.
    """
    n = mask.ndim
    base = np.pad(mask, 1) if full else mask
    op = np.logical_or if full else np.logical_and
    chi = 0
    cache: dict[tuple[int, ...], np.ndarray] = {(): base}
    for size in range(n + 1):
        for axes in combinations(range(n), size):
            if axes not in cache:
                prev, ax = cache[axes[:-1]], axes[-1]
                hi = [slice(None)] * n
                lo = [slice(None)] * n
                hi[ax], lo[ax] = slice(1, None), slice(None, -1)
                cache[axes] = op(prev[tuple(hi)], prev[tuple(lo)])
            count = int(np.count_nonzero(cache[axes]))
            dim = n - size if full else size
            chi += -count if dim % 2 else count
        for key in [k for k in cache if len(k) == size - 1]:
            del cache[key]
    return chi


def _count_components(mask: np.ndarray, connectivity: int) -> int:
    if not mask.any():
        return 0
    return int(cc3d.connected_components(mask.view(np.uint8), connectivity=connectivity, return_N=True)[1])


def _betti(mask: np.ndarray, connectivity: int | None) -> tuple[int, ...]:
    fg, bg = _resolve_connectivity(mask.ndim, connectivity)
    b0 = _count_components(mask, fg)
    chi = _euler_characteristic(mask, full=fg == _FULL[mask.ndim])
    if mask.ndim == 2:
        return b0, b0 - chi
    b2 = _count_components(np.pad(~mask, 1, constant_values=True), bg) - 1 if b0 else 0
    return b0, b0 + b2 - chi, b2


def betti_numbers(mask: ArrayLike, *, connectivity: int | None = None) -> tuple[int, ...]:
    """Betti numbers of a binary 2D or 3D image.

    Args:
        mask: ``(H, W)`` or ``(H, W, D)`` binary mask (bool or values in {0, 1}).
        connectivity: foreground connectivity: ``None`` (default) = 8 in 2D / 26 in 3D
            (gudhi's top-dimensional-cell convention); 4 / 6 gives the dual convention.
            The background always gets the complementary connectivity.

    Returns:
        ``(β0, β1)`` in 2D, ``(β0, β1, β2)`` in 3D. An empty mask has all zeros.

    Raises:
        ValueError: if ``mask`` is not a 2D/3D binary image or ``connectivity`` is invalid.
    """
    m = np.ascontiguousarray(as_binary(mask, "mask"))
    check_spatial(m, "mask")
    return _betti(m, connectivity)


def _patch_slices(shape: tuple[int, ...], patch: int | Sequence[int]) -> list[tuple[slice, ...]]:
    size = (int(patch),) * len(shape) if np.isscalar(patch) else tuple(int(p) for p in patch)  # type: ignore[arg-type]
    if len(size) != len(shape) or min(size) < 1:
        raise ValueError(f"`patch` must be a positive int or one positive size per axis, got {patch!r}.")
    starts = [range(0, n, s) for n, s in zip(shape, size)]
    return [tuple(slice(o, o + s) for o, s in zip(origin, size)) for origin in product(*starts)]


def betti_errors(
    preds: ArrayLike,
    target: ArrayLike,
    *,
    patch: int | Sequence[int] | None = None,
    connectivity: int | None = None,
) -> dict[str, float]:
    """Absolute Betti-number errors ``|β_i(P) − β_i(G)|`` per dimension.

    With ``patch`` the image is also cut into a regular grid of non-overlapping patches
    starting at the origin; border patches that do not fit are kept, smaller (every voxel
    lies in exactly one patch). Each patch is treated as an image of its own (padded with
    background), and the mean error over all patches is reported.

    Args:
        preds: ``(H, W[, D])`` binary prediction.
        target: ``(H, W[, D])`` binary reference.
        patch: patch size (int for all axes, or one per axis); ``None`` for none.
        connectivity: as in :func:`betti_numbers`.

    Returns:
        ``{"betti0_err", "betti1_err"[, "betti2_err"]}`` (3D adds β2), plus the same keys
        with suffix ``_patch`` when ``patch`` is given. Always finite (empty masks have β = 0).

    Raises:
        ValueError: on shape mismatch, non-binary input or a bad ``patch``.
    """
    p = np.ascontiguousarray(as_binary(preds, "preds"))
    g = np.ascontiguousarray(as_binary(target, "target"))
    check_same_shape(p, g, "preds", "target")
    check_spatial(p, "preds")
    out = _global_betti_errors(p, g, connectivity)
    if patch is not None:
        out.update(_patch_betti_errors(p, g, patch, connectivity))
    return out


def _global_betti_errors(p: np.ndarray, g: np.ndarray, connectivity: int | None) -> dict[str, float]:
    """``betti{i}_err`` of two contiguous bool masks (any crop keeping all foreground)."""
    diff = np.abs(np.subtract(_betti(p, connectivity), _betti(g, connectivity)))
    return {f"betti{i}_err": float(v) for i, v in enumerate(diff)}


def _patch_betti_errors(
    p: np.ndarray, g: np.ndarray, patch: int | Sequence[int], connectivity: int | None
) -> dict[str, float]:
    """``betti{i}_err_patch`` of two full-size bool masks (the grid starts at the origin)."""
    errs = [
        np.abs(
            np.subtract(
                _betti(np.ascontiguousarray(p[s]), connectivity),
                _betti(np.ascontiguousarray(g[s]), connectivity),
            )
        )
        for s in _patch_slices(p.shape, patch)
    ]
    return {f"betti{i}_err_patch": float(v) for i, v in enumerate(np.mean(errs, axis=0))}


def skeleton(mask: np.ndarray) -> np.ndarray:
    """scikit-image skeleton (Zhang 2D, Lee 3D) computed on the mask's bounding box.

    Cropping to the bounding box plus a one-voxel margin gives the same skeleton as the
    full image (both algorithms pad with background and are translation invariant) and is
    much faster for sparse masks.

    Args:
        mask: ``(H, W[, D])`` bool mask.

    Returns:
        ``(H, W[, D])`` bool skeleton.
    """
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    box = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        nz = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(nz[0]) - 1, 0), int(nz[-1]) + 2))
    out[tuple(box)] = skeletonize(mask[tuple(box)]).astype(bool)
    return out


def _topology_fraction(skel: np.ndarray, mask: np.ndarray, other: np.ndarray) -> float:
    """|S ∩ other| / |S|, with S = the mask itself when the skeleton is empty."""
    s = skel if skel.any() else mask
    return float(np.count_nonzero(s & other)) / float(np.count_nonzero(s))


def cldice(preds: ArrayLike, target: ArrayLike) -> float:
    """Centerline Dice (Shit et al., CVPR 2021, https://arxiv.org/abs/2003.07311).

    ``Tprec = |S(P) ∩ G| / |S(P)|``, ``Tsens = |S(G) ∩ P| / |S(G)|``,
    ``clDice = 2 Tprec Tsens / (Tprec + Tsens)``, with ``S`` = scikit-image ``skeletonize``
    (Zhang in 2D, Lee in 3D, as the paper's code).

    Empty rules: both masks empty → NaN; exactly one empty → 0. A non-empty mask whose
    skeleton is empty (e.g. a 2×2×2 cube under Lee thinning) uses the mask itself as its
    skeleton. ``Tprec = Tsens = 0`` → 0.

    Args:
        preds: ``(H, W[, D])`` binary prediction.
        target: ``(H, W[, D])`` binary reference.

    Returns:
        clDice in [0, 1], or NaN when both masks are empty.

    Raises:
        ValueError: on shape mismatch or non-binary input.
    """
    p = as_binary(preds, "preds")
    g = as_binary(target, "target")
    check_same_shape(p, g, "preds", "target")
    check_spatial(p, "preds")
    p_any, g_any = bool(p.any()), bool(g.any())
    if not (p_any or g_any):
        return float("nan")
    if not (p_any and g_any):
        return 0.0
    return _cldice_combine(_skeleton_fraction(p, g), _skeleton_fraction(g, p))


def _skeleton_fraction(mask: np.ndarray, other: np.ndarray) -> float:
    """``|S(mask) ∩ other| / |S(mask)|`` (Tprec for ``mask = P``, Tsens for ``mask = G``)."""
    return _topology_fraction(skeleton(mask), mask, other)


def _cldice_combine(tprec: float, tsens: float) -> float:
    """Harmonic mean of Tprec and Tsens; 0 when both are 0."""
    if tprec + tsens == 0:
        return 0.0
    return 2.0 * tprec * tsens / (tprec + tsens)
