"""What a registered metric computes from: one case (:class:`CaseContext`) or one class of it
(:class:`ClassContext`), each with a cache that metrics share (surface distances for HD95 and
NSD, Betti numbers for the Betti errors, voxel counts for Dice and IoU).

Every per-class metric but those registered with ``full_image=True`` (the patch-wise Betti
errors, whose grid starts at the image origin) sees the masks cropped to the bounding box of
``P ∪ G`` plus a one-voxel margin. That gives identical values for every built-in metric (Betti
numbers, skeletons and surface edges only see the foreground and its one-voxel background
margin; voxel counts only the foreground) and is much faster for sparse masks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


class _Memo:
    """A per-context cache: ``memo(key, compute)`` computes once and returns the stored value."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` on the first call with ``key``, the stored result afterwards."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


def joint_box(p: np.ndarray, g: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of ``p | g`` plus a one-voxel margin (clipped); the whole image if empty.

    Args:
        p: ``(H, W[, D])`` bool mask.
        g: ``(H, W[, D])`` bool mask.
    """
    union = p | g
    box = []
    for ax in range(p.ndim):
        nz = np.flatnonzero(union.any(axis=tuple(a for a in range(p.ndim) if a != ax)))
        box.append(slice(max(int(nz[0]) - 1, 0), int(nz[-1]) + 2) if nz.size else slice(None))
    return tuple(box)


class ClassContext(_Memo):
    """Class ``c`` of one case, one-vs-rest: what a per-class metric gets.

    Attributes:
        c: the class index.
        pred: ``(h, w[, d])`` bool prediction ``== c`` on the joint crop (C-contiguous).
        target: ``(h, w[, d])`` bool truth ``== c`` on the same crop.
        pred_full: ``(H, W[, D])`` uncropped prediction mask, or ``None`` unless a registered
            metric with ``full_image=True`` is computed.
        target_full: the uncropped truth mask, likewise.
        spacing: voxel size per axis (physical units), one float per axis.
        parallel: whether slow parts may run in a forked child (``case_metrics(parallel=)``).
    """

    def __init__(
        self,
        c: int,
        p: np.ndarray,
        g: np.ndarray,
        *,
        spacing: tuple[float, ...],
        keep_full: bool,
        parallel: bool,
    ) -> None:
        super().__init__()
        self.c, self.spacing, self.parallel = c, spacing, parallel
        self.pred_full, self.target_full = (p, g) if keep_full else (None, None)
        box = joint_box(p, g)
        self.pred, self.target = np.ascontiguousarray(p[box]), np.ascontiguousarray(g[box])

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return self.pred.ndim


@dataclass
class CaseContext(_Memo):
    """One whole case: what a metric registered with ``per_class=False`` gets.

    Attributes:
        pred: ``(H, W[, D])`` predicted label map (bool for two-channel probabilities), set to
            background outside ``fov``.
        target: ``(H, W[, D])`` integer truth label map, background outside ``fov``.
        prob: ``(C, H, W[, D])`` class probabilities, or ``None`` for label-map input.
        fov: ``(H, W[, D])`` bool field of view, or ``None``.
        num_classes: C.
        classes: the evaluated classes (foreground, or all with ``include_background``).
        spacing: voxel size per axis.
        parallel: whether slow parts may run in a forked child.
    """

    pred: np.ndarray
    target: np.ndarray
    prob: np.ndarray | None
    fov: np.ndarray | None
    num_classes: int
    classes: list[int]
    spacing: tuple[float, ...]
    parallel: bool
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return self.target.ndim
