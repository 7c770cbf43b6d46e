"""Embedded default data: synthetic branching vessel trees in 2D and 3D, no download.

Each case is generated from ``(data_seed, index)`` alone, so every machine sees the same data.
A case is a few vessel trees grown from the border (random-walk centrelines, bifurcations,
radii tapering from a few voxels down to about one), plus anastomoses that join branches so
the mask has loops (Betti-1 > 0), rendered as dark tubes (contrast falling with radius) on a
textured, unevenly lit, noisy background. ``label`` is the tube mask.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from datamodules.args import int_at_least, integer, spatial_size
from datamodules.base import Case, CaseRef, SegDataModule
from datamodules.registry import register_dataset

_MIN_RADIUS = 0.6


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(math.sqrt(float(v.dot(v))), 1e-8)  # np.linalg.norm's own formula, without its checks


def _grow_tree(
    rng: np.random.Generator, shape: np.ndarray, start: np.ndarray, direction: np.ndarray, radius: float
) -> list[tuple[tuple[float, ...], float]]:
    """Centreline samples ``(point, radius)`` of one tree, 0.5 voxel apart.

    The direction stays a numpy vector (its norm is numpy's ``dot``, which rounds differently
    from a Python sum); the point and the bounds test are plain floats, the same IEEE
    operations without numpy's per-call cost.
    """
    samples: list[tuple[tuple[float, ...], float]] = []
    stack = [(tuple(start.astype(float).tolist()), _unit(direction), radius, 0)]
    upper = (shape - 1).tolist()
    while stack and len(samples) < 40000:
        p, d, r, depth = stack.pop()
        length = 0.0
        max_len = rng.uniform(0.5, 1.0) * float(shape.min()) * (0.85**depth)
        while length < max_len and r >= _MIN_RADIUS:
            d = _unit(d + rng.normal(0, 0.12, size=d.shape))
            p = tuple([x + 0.5 * v for x, v in zip(p, d.tolist())])
            if any(x < 0 or x > u for x, u in zip(p, upper)):
                break
            samples.append((p, r))
            length += 0.5
            r *= 0.997
            if length > 4 and rng.random() < 0.03 and depth < 7:
                child = _unit(d + rng.normal(0, 0.9, size=d.shape))
                stack.append((p, child, r * rng.uniform(0.5, 0.75), depth + 1))
                r *= rng.uniform(0.8, 0.95)
    return samples


def _anastomoses(
    rng: np.random.Generator, samples: list[tuple[Any, float]], n: int
) -> list[tuple[np.ndarray, float]]:
    """Curved connections between pairs of centreline points 10-40 voxels apart (loops)."""
    out: list[tuple[np.ndarray, float]] = []
    if len(samples) < 50:
        return out
    pts = np.stack([p for p, _ in samples])
    for _ in range(n):
        for _try in range(30):
            i, j = rng.integers(len(samples), size=2)
            dist = float(np.linalg.norm(pts[i] - pts[j]))
            if 10 <= dist <= 40 and abs(int(i) - int(j)) > 80:
                break
        else:
            continue
        a, b = pts[i], pts[j]
        ctrl = (a + b) / 2 + rng.normal(0, dist / 4, size=a.shape)
        r = max(_MIN_RADIUS, min(samples[i][1], samples[j][1], 1.5) * rng.uniform(0.7, 1.0))
        for t in np.linspace(0, 1, int(dist * 3) + 2):
            out.append(((1 - t) ** 2 * a + 2 * (1 - t) * t * ctrl + t**2 * b, r))
    return out


def _rasterise(shape: tuple[int, ...], pts: np.ndarray, radii: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Union of balls around the samples ``pts (N, dims)`` with ``radii (N,)``; radius at least the
    voxel half-diagonal so lines stay connected.

    Vectorised over samples: each sample tests the same ``width^dims`` window of voxels from the
    floor of its lower corner (the voxels past its own upper corner are farther than its radius).
    """
    if not len(pts):
        return np.zeros(shape, dtype=bool)
    dims = len(shape)
    rad = np.maximum(radii, 0.5 * np.sqrt(dims) + 0.05)
    lo = np.floor(pts - rad[:, None]).astype(int)
    width = int((np.ceil(pts + rad[:, None]).astype(int) + 1 - lo).max())
    window = np.stack(np.meshgrid(*[np.arange(width)] * dims, indexing="ij"), -1).reshape(-1, dims)
    # A margin on every side holds each window whole (anastomoses may bend outside the image): no
    # bounds test per voxel, the margin is cut off at the end. Voxels are addressed by their flat
    # index in the padded mask.
    pad = max(width, int(-lo.min()), int((lo.max(axis=0) + width - np.array(shape)).max()))
    padded = np.zeros([s + 2 * pad for s in shape], dtype=bool)
    strides = np.array(padded.strides) // padded.itemsize  # (dims,) elements per step along each axis
    offsets = window @ strides  # (width^dims,)
    for s in range(0, len(pts), chunk):
        corner, centre = lo[s : s + chunk], pts[s : s + chunk]
        d2 = sum((corner[:, k, None] + window[None, :, k] - centre[:, k, None]) ** 2 for k in range(dims))
        hit = d2 <= rad[s : s + chunk, None] ** 2  # (n, width^dims)
        flat = ((corner + pad) @ strides)[:, None] + offsets[None]
        padded.flat[flat[hit]] = True
    return padded[tuple(slice(pad, pad + n) for n in shape)].copy()


def generate_vessels(shape: Sequence[int], seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case.

    Args:
        shape: spatial size, 2 or 3 entries.
        seed: data seed; ``(seed, index)`` fixes the case.
        index: case index.

    Returns:
        ``image (*shape)`` float32, z-scored; ``label (*shape)`` int64 in {0, 1}.
    """
    shape = tuple(int(s) for s in shape)
    dims = len(shape)
    rng = np.random.default_rng([seed, index, dims])
    size = np.array(shape, dtype=float)
    samples: list[tuple[Any, float]] = []  # (point (dims,), radius)
    for _ in range(int(rng.integers(2, 5))):
        axis, side = int(rng.integers(dims)), int(rng.integers(2))
        start = rng.uniform(0.15, 0.85, size=dims) * (size - 1)
        start[axis] = side * (size[axis] - 1)
        inward = (size - 1) / 2 - start + rng.normal(0, size.min() / 6, size=dims)
        radius = (
            rng.uniform(0.022, 0.032) * size.min() if dims == 2 else rng.uniform(0.03, 0.045) * size.min()
        )
        samples += _grow_tree(rng, size, start, inward, radius)
    samples += _anastomoses(rng, samples, int(rng.integers(1, 4)))
    pts = np.array([p for p, _ in samples], dtype=float).reshape(-1, dims)  # (N, dims)
    radii = np.array([r for _, r in samples], dtype=float)  # (N,)
    mask = _rasterise(shape, pts, radii)
    radius_map = np.zeros(shape, dtype=np.float32)
    centres = np.clip(np.round(pts).astype(int), 0, np.array(shape) - 1)
    np.maximum.at(radius_map, tuple(centres.T), radii.astype(np.float32))
    contrast = gaussian_filter(np.clip(0.1 + 0.12 * radius_map, 0, 0.45), 1.0)
    contrast = np.where(mask, np.maximum(contrast, 0.1), 0)
    tubes = gaussian_filter(mask.astype(np.float32) * contrast, 0.6)
    texture = gaussian_filter(rng.normal(size=shape), size.min() / 12) * 8 + gaussian_filter(
        rng.normal(size=shape), 1.5
    )
    ramp = _unit(rng.normal(size=dims))
    coords = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    light = 0.75 + 0.2 * np.tensordot(ramp, coords, axes=1) - 0.15 * (coords**2).sum(0) / dims
    image = light * (0.6 + 0.08 * texture - tubes) + rng.normal(0, 0.035, size=shape)
    image = (image - image.mean()) / (image.std() + 1e-8)
    return image.astype(np.float32), mask.astype(np.int64)


@functools.lru_cache(maxsize=128)
def _cached_case(shape: tuple[int, ...], seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`generate_vessels` kept for the process: the runs of a sweep share their cases
    (``image`` float32, ``label`` uint8, both read-only; ``load_case`` hands out copies)."""
    image, label = generate_vessels(shape, seed, index)
    label = label.astype(np.uint8)
    image.flags.writeable = label.flags.writeable = False
    return image, label


@register_dataset("synthetic_vessels")
class SyntheticVesselsDataModule(SegDataModule):
    """Synthetic 2D vessel trees (embedded default): fixed train/val/test splits by index."""

    task = "synthetic vessel trees with loops, 2D (embedded, no download)"
    spatial_dims = 2
    license = "generated by segbench (CC0)"
    default_patch_size = (64, 64)
    default_size: tuple[int, ...] = (128, 128)
    fixed_val_split = True
    num_cases = 38  # default num_train + num_val + num_test
    on_bad_case_default = "raise"  # generated cases cannot be corrupt: a failure is a bug
    extra_arg_checks = {
        "size": spatial_size,
        "num_train": int_at_least(1),
        "num_val": int_at_least(0),
        "num_test": int_at_least(0),
        "data_seed": integer,
    }

    def __init__(
        self,
        root: Any = None,
        *,
        size: Sequence[int] | None = None,
        num_train: int = 24,
        num_val: int = 6,
        num_test: int = 8,
        data_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self._check_args(
            {
                "size": size,
                "num_train": num_train,
                "num_val": num_val,
                "num_test": num_test,
                "data_seed": data_seed,
            }
        )
        super().__init__(root, **kwargs)
        self.size = tuple(size or self.default_size)
        self.counts = {"train": num_train, "val": num_val, "test": num_test}
        self.data_seed = data_seed

    def list_cases(self) -> list[CaseRef]:
        refs, index = [], 0
        for split, n in self.counts.items():
            for _ in range(n):
                refs.append(CaseRef(f"synth_{index:04d}", split, {"index": index}))
                index += 1
        return refs

    def load_case(self, ref: CaseRef) -> Case:
        image, label = _cached_case(self.size, self.data_seed, ref.info["index"])
        return Case(
            ref.case_id, image[None].copy(), label.astype(np.int64), spacing=(1.0,) * self.spatial_dims
        )

    def load_unlabelled(self, ref: CaseRef) -> Case:
        """The case without its label (``labelled_fraction < 1``): the generator draws image and
        label together, so the label is generated and dropped; ``label`` is all zeros and
        ``extras["unlabelled"] = True``. The image is the one :meth:`load_case` returns."""
        image, _ = _cached_case(self.size, self.data_seed, ref.info["index"])
        label = np.zeros(image.shape, dtype=np.int64)
        return Case(
            ref.case_id,
            image[None].copy(),
            label,
            spacing=(1.0,) * self.spatial_dims,
            extras={"unlabelled": True},
        )


@register_dataset("synthetic_vessels_3d")
class SyntheticVessels3dDataModule(SyntheticVesselsDataModule):
    """Synthetic 3D vessel trees (embedded): same generator in a 64³ volume."""

    task = "synthetic vessel trees with loops, 3D (embedded, no download)"
    spatial_dims = 3
    default_patch_size = (32, 32, 32)
    default_size = (64, 64, 64)
