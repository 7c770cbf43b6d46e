"""Interactive segmentation protocol: the simulated user's next click, click encodings, NoC.

The evaluation protocol (Xu et al. 2016, "Deep Interactive Object Selection"; Sofiiuk et al.
2022, "Reviving Iterative Training with Mask Guidance for Interactive Segmentation", RITM):
after each prediction the simulated user clicks inside the largest error region, at the voxel
farthest from that region's boundary; a click on a missed object part (false negative) is
positive, a click on a false positive is negative. The model gets the clicks as disk / ball
maps (:func:`click_maps`); the score is the number of clicks to reach a Dice threshold
(:func:`noc`) and the Dice after k clicks (:func:`dice_after`).

How RITM itself chooses (``isegm/inference/clicker.py``, ``Clicker._get_next_click``): it takes
the Euclidean distance transform of the whole false-negative mask and of the whole
false-positive mask (each padded by one background pixel, so that the image border counts as
boundary) and clicks the pixel with the larger distance of the two (positive only if the FN
maximum is strictly larger; among equal maxima the first in row-major order; already clicked
pixels are excluded); it does not separate connected components. Its training sampler
(``get_next_points``) draws the click at random among the pixels deeper than half that maximum.
segbench clicks inside the largest connected error component instead (see :func:`next_click`);
the two agree whenever the largest component also holds the deepest point, e.g. for a single
error region.
"""

from __future__ import annotations

from collections.abc import Sequence

import cc3d
import numpy as np
from scipy import ndimage

from bench.metrics._convert import ArrayLike, to_numpy

Click = tuple[tuple[int, ...], bool]  # (voxel coordinate, positive)


def _binary(x: ArrayLike, name: str) -> np.ndarray:
    a = to_numpy(x, name)
    if a.ndim not in (2, 3):
        raise ValueError(f"`{name}` must be a 2D or 3D mask, got shape {a.shape}.")
    return a.astype(bool)


def _largest_component(labels: np.ndarray) -> np.ndarray:
    """Bool mask of the largest non-zero component of a label image; ties: the component whose
    first voxel (row-major) comes first."""
    flat = labels.ravel()
    ids, first, sizes = np.unique(flat, return_index=True, return_counts=True)
    keep = ids != 0
    ids, first, sizes = ids[keep], first[keep], sizes[keep]
    best = ids[np.lexsort((first, -sizes))[0]]  # largest size, then earliest first voxel
    return labels == best


def _component_dt(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance transform of ``mask`` padded with one background voxel per side (the
    image border counts as boundary), cropped back to ``mask``'s shape."""
    return ndimage.distance_transform_edt(np.pad(mask, 1))[(slice(1, -1),) * mask.ndim]


def _deepest_voxel(mask: np.ndarray) -> tuple[int, ...]:
    """The voxel of ``mask`` farthest from its boundary (:func:`_component_dt`); ties: the
    smallest flat index."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(_component_dt(mask))), mask.shape))


def _largest_error(
    pred: np.ndarray, target: np.ndarray, fov: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(kind, component)``: the error kind map (1 FN, 2 FP, 0 none) and the bool mask of the
    largest error component (all ``False`` without error)."""
    kind = (target & ~pred).astype(np.uint8) + 2 * (pred & ~target).astype(np.uint8)
    if fov is not None:
        kind[~_binary(fov, "fov")] = 0
    if not kind.any():
        return kind, np.zeros(kind.shape, bool)
    labels = cc3d.connected_components(kind, connectivity=8 if kind.ndim == 2 else 26)
    return kind, _largest_component(labels)


def next_click(pred: ArrayLike, target: ArrayLike, *, fov: ArrayLike | None = None) -> Click | None:
    """The simulated user's next click on a binary prediction.

    Error voxels are ``pred != target`` (inside ``fov`` when given). They are split into
    connected components with full connectivity (8 in 2D, 26 in 3D), false negatives
    (``target & ~pred``) and false positives (``pred & ~target``) separately, so one component
    holds one kind of error. The largest component is chosen (ties: the one whose first voxel in
    row-major order comes first); the click is its voxel farthest from the component's boundary
    (maximum of the Euclidean distance transform, in voxels, of the component padded with one
    background voxel, so the image border counts as boundary; ties: the smallest flat index).

    Args:
        pred: ``(H, W[, D])`` binary prediction (bool or 0/1).
        target: ``(H, W[, D])`` binary truth.
        fov: optional ``(H, W[, D])`` bool field of view; errors outside it are ignored.

    Returns:
        ``(coordinate, positive)``: a tuple of ``ndim`` ints and ``True`` when the component is a
        false negative (the object is there), or ``None`` when there is no error.
    """
    p, g = _binary(pred, "pred"), _binary(target, "target")
    if p.shape != g.shape:
        raise ValueError(f"`pred` {p.shape} and `target` {g.shape} differ in shape.")
    kind, component = _largest_error(p, g, fov)
    if not component.any():
        return None
    at = _deepest_voxel(component)
    return at, bool(kind[at] == 1)


def click_maps(clicks: Sequence[Click], shape: Sequence[int], *, radius: float = 5) -> np.ndarray:
    """Disk (2D) / ball (3D) encoding of clicks, the channels a click-taking model receives.

    A voxel ``x`` is set in a click's map when ``‖x − click‖₂ ≤ radius`` (voxel units, RITM's
    ``use_disks=True`` encoding); maps of several clicks of one sign are OR-ed.

    Args:
        clicks: ``(coordinate, positive)`` pairs (as :func:`next_click` returns).
        shape: spatial shape ``(H, W[, D])``.
        radius: disk radius in voxels (>= 0).

    Returns:
        ``(2, H, W[, D])`` float32: channel 0 the positive clicks, channel 1 the negative ones.
    """
    if radius < 0:
        raise ValueError(f"`radius` must be >= 0, got {radius}.")
    shape = tuple(int(s) for s in shape)
    out = np.zeros((2, *shape), np.float32)
    grid = np.indices(shape, dtype=np.float64)
    for at, positive in clicks:
        if len(at) != len(shape):
            raise ValueError(f"click {at} does not have {len(shape)} coordinates.")
        d2 = sum((grid[i] - at[i]) ** 2 for i in range(len(shape)))
        out[0 if positive else 1][d2 <= radius**2] = 1.0
    return out


def noc(dice_per_click: Sequence[float], threshold: float, max_clicks: int = 20) -> float:
    """Number of clicks (NoC) to reach ``Dice >= threshold``.

    ``dice_per_click[k]`` is the Dice after ``k + 1`` clicks; only the first ``max_clicks``
    count. The standard convention (RITM, Xu et al. 2016): a case that never reaches the
    threshold within ``max_clicks`` clicks scores ``max_clicks`` (NoC@85 / NoC@90 use 0.85 / 0.90
    and 20 clicks). NaN Dice values never reach the threshold.

    Returns:
        A value in ``[1, max_clicks]`` (a float, as every metric value).
    """
    d = np.asarray(dice_per_click, dtype=np.float64)[:max_clicks]
    hit = np.flatnonzero(d >= threshold)
    return float(hit[0] + 1) if hit.size else float(max_clicks)


def dice_after(dice_per_click: Sequence[float], k: int) -> float:
    """Dice after ``k`` clicks (``k >= 1``): ``dice_per_click[k - 1]``.

    Raises:
        ValueError: when ``k < 1`` or the sequence holds fewer than ``k`` clicks.
    """
    if k < 1 or k > len(dice_per_click):
        raise ValueError(f"`k` must be in [1, {len(dice_per_click)}], got {k}.")
    return float(dice_per_click[k - 1])


def simulate_training_clicks(
    target: ArrayLike,
    pred_or_none: ArrayLike | None,
    rng: np.random.Generator,
    *,
    max_initial: int = 5,
) -> list[Click]:
    """Clicks of the iterative training protocol (RITM's sampler, simplified).

    Without a prediction (the start of an iterative round): ``n_pos`` positive clicks drawn
    uniformly without replacement from the object's voxels and ``n_neg`` negative clicks from the
    background, with ``n_pos ~ U{1..max_initial}`` and ``n_neg ~ U{0..max_initial}`` (capped by
    the number of voxels; an empty object gives no positive click). With a prediction (the
    following iterations): one error click in the component :func:`next_click` chooses, drawn
    uniformly among its voxels deeper than half its maximum distance to the boundary (RITM's
    training rule ``get_next_points``: ``dt > max_dt / 2``, there on the whole FN or FP mask); none
    without error. Deterministic for a seed.

    Args:
        target: ``(H, W[, D])`` binary truth.
        pred_or_none: ``(H, W[, D])`` binary current prediction, or ``None``.
        rng: the random generator (``np.random.default_rng(seed)``).
        max_initial: largest number of initial clicks of each sign (>= 1).

    Returns:
        ``[(coordinate, positive), ...]``: positives first, then negatives.
    """
    g = _binary(target, "target")
    if pred_or_none is not None:
        p = _binary(pred_or_none, "pred_or_none")
        if p.shape != g.shape:
            raise ValueError(f"`pred_or_none` {p.shape} and `target` {g.shape} differ in shape.")
        kind, component = _largest_error(p, g, None)
        if not component.any():
            return []
        dt = _component_dt(component)
        inner = np.flatnonzero(dt > dt.max() / 2)
        at = tuple(int(i) for i in np.unravel_index(int(rng.choice(inner)), g.shape))
        return [(at, bool(kind[at] == 1))]
    if max_initial < 1:
        raise ValueError(f"`max_initial` must be >= 1, got {max_initial}.")
    n_pos, n_neg = int(rng.integers(1, max_initial + 1)), int(rng.integers(0, max_initial + 1))
    clicks: list[Click] = []
    for region, n, positive in ((g, n_pos, True), (~g, n_neg, False)):
        where = np.flatnonzero(region)
        pick = rng.choice(where, size=min(n, where.size), replace=False) if where.size else where
        clicks += [(tuple(int(i) for i in np.unravel_index(int(f), g.shape)), positive) for f in pick]
    return clicks
