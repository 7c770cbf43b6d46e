"""Simulated scribble annotations from dense label maps (training with weak labels).

:func:`simulate_scribbles` turns a dense ``(*spatial)`` label map (2D or 3D) into a sparse one that
a person could have drawn with a few strokes:

- foreground: for every class ``1..num_classes-1`` and every connected component of it (full
  connectivity), its skeleton (:func:`skimage.morphology.skeletonize`, 3D too) is computed and a
  contiguous piece of it kept: the ``ceil(fg_keep * n)`` skeleton voxels closest, in graph
  distance along the skeleton (full connectivity, breadth-first), to a seeded random skeleton
  voxel. A component whose skeleton is empty keeps its innermost voxel (largest distance to its
  boundary);
- background: the background voxels farther than ``bg_margin`` voxels (Euclidean) from every
  foreground voxel are skeletonised, and ``bg_strokes`` seeded strokes are grown on that skeleton
  the same way, each of up to ``ceil(bg_keep * n / bg_strokes)`` voxels. When no background voxel
  is that far from the foreground, there is no background stroke;
- every other voxel is ``ignore_index``.

Every scribble voxel carries the true class of that voxel, so a scribble is a subset of the dense
label. The same ``seed`` gives the same scribble; the draws follow ``np.random.default_rng(seed)``
in class, then component order, then the background strokes.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

__all__ = ["simulate_scribbles"]


def _full_structure(ndim: int) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, ndim)


def _grow_stroke(skeleton: np.ndarray, start: tuple[int, ...], size: int) -> np.ndarray:
    """``(k, ndim)`` coordinates of the ``k <= size`` skeleton voxels first reached by a breadth-first
    walk from ``start`` along the skeleton (full connectivity): a contiguous piece of it."""
    ndim = skeleton.ndim
    offsets = [o for o in np.ndindex(*(3,) * ndim) if any(v != 1 for v in o)]
    offsets = [tuple(v - 1 for v in o) for o in offsets]
    seen = {start}
    order = [start]
    queue = deque([start])
    shape = skeleton.shape
    while queue and len(order) < size:
        p = queue.popleft()
        for off in offsets:
            q = tuple(a + b for a, b in zip(p, off, strict=True))
            if q in seen or any(c < 0 or c >= n for c, n in zip(q, shape, strict=True)) or not skeleton[q]:
                continue
            seen.add(q)
            order.append(q)
            queue.append(q)
            if len(order) >= size:
                break
    return np.array(order[:size], dtype=np.intp).reshape(-1, ndim)


def _stroke(mask: np.ndarray, rng: np.random.Generator, keep: float) -> np.ndarray:
    """``(k, ndim)`` voxels of one seeded contiguous piece of ``mask``'s skeleton (about ``keep`` of it)."""
    skeleton = skeletonize(mask)
    points = np.argwhere(skeleton)
    if not len(points):  # a component too thin to keep a skeleton: its innermost voxel
        inner = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(mask))), mask.shape)
        return np.array([inner], dtype=np.intp)
    start = tuple(int(v) for v in points[int(rng.integers(len(points)))])
    return _grow_stroke(skeleton, start, max(1, math.ceil(keep * len(points))))


def simulate_scribbles(
    label: np.ndarray,
    num_classes: int,
    *,
    seed: int,
    ignore_index: int = 255,
    fg_keep: float = 0.5,
    bg_margin: float = 3.0,
    bg_strokes: int = 3,
    bg_keep: float = 0.3,
) -> np.ndarray:
    """Scribbles drawn from a dense label map.

    Args:
        label: ``(*spatial)`` integer label map (2D or 3D) in ``[0, num_classes)``.
        num_classes: number of classes, background (0) included.
        seed: seed of every draw (the start voxel of each stroke).
        ignore_index: value of the voxels without a scribble (outside ``[0, num_classes)``).
        fg_keep: fraction of each foreground component's skeleton kept, in ``(0, 1]``.
        bg_margin: background strokes lie farther than this (voxels, Euclidean) from any foreground.
        bg_strokes: number of background strokes (0: none).
        bg_keep: fraction of the background skeleton the strokes cover together, in ``(0, 1]``.

    Returns:
        ``(*spatial)`` int64: the true class on scribble voxels, ``ignore_index`` elsewhere.

    Raises:
        ValueError: label values outside ``[0, num_classes)``, an ``ignore_index`` inside it or a
            fraction outside ``(0, 1]``.
    """
    label = np.asarray(label)
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise ValueError(f"label values must lie in [0, {num_classes}), got {label.min()}..{label.max()}")
    if 0 <= ignore_index < num_classes:
        raise ValueError(f"ignore_index {ignore_index} is a class index (num_classes={num_classes})")
    for name, v in (("fg_keep", fg_keep), ("bg_keep", bg_keep)):
        if not 0 < v <= 1:
            raise ValueError(f"{name} must lie in (0, 1], got {v}")
    rng = np.random.default_rng(seed)
    out = np.full(label.shape, ignore_index, dtype=np.int64)
    structure = _full_structure(label.ndim)
    for c in range(1, num_classes):
        components, _ = ndimage.label(label == c, structure=structure)
        for k, box in enumerate(ndimage.find_objects(components), start=1):
            # the component's bounding box, padded by one voxel (the skeleton never touches the edge)
            mask = np.pad(components[box] == k, 1)
            corner = np.array([s.start - 1 for s in box])
            pts = _stroke(mask, rng, fg_keep) + corner
            out[tuple(pts.T)] = c
    background = label == 0
    if bg_strokes > 0 and background.any():
        far = ndimage.distance_transform_edt(background) if (~background).any() else None
        region = background if far is None else far > bg_margin
        if region.any():
            skeleton = skeletonize(region)
            points = np.argwhere(skeleton)
            if len(points):
                size = max(1, math.ceil(bg_keep * len(points) / bg_strokes))
                for _ in range(bg_strokes):
                    start = tuple(int(v) for v in points[int(rng.integers(len(points)))])
                    pts = _grow_stroke(skeleton, start, size)
                    out[tuple(pts.T)] = 0
    return out
