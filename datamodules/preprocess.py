"""Preprocessing of volume cases as DataModule options, and the map back to the original grid.

Three options of :class:`datamodules.generic.VolumeDataModule` (``docs/preprocessing.md``):

- ``spacing: [sx, sy, sz]``: resample to this voxel size (mm). Shape per axis
  ``round(n * s / t)`` (at least 1). Images: linear; labels: nearest. Separate-z rule of nnU-Net
  (``get_do_separate_z`` / ``resample_data_or_seg``): when the current spacing is anisotropic
  (``max / min > ANISO_THRESHOLD = 3``) its largest-spacing axis is the out-of-plane axis, else
  when the target spacing is, its largest-spacing axis is; when two axes share the largest
  spacing there is no separate axis. With an out-of-plane axis, images are resampled linearly
  in-plane and with nearest neighbour (order 0) along that axis. Voxel centres are aligned
  (``scipy.ndimage.zoom(grid_mode=True, mode="nearest")``: source coordinate
  ``(i + 0.5) * n_in / n_out - 0.5``, edges repeated; a nearest tie takes the higher index).
- ``orientation: "RAS"``: reorient by the affine (nibabel's ``io_orientation`` +
  ``apply_orientation``, what ``as_closest_canonical`` does), before any resampling.
- ``intensity: "zscore" | "ct"``: ``ct`` is nnU-Net's CTNormalization: clip every channel to the
  0.5 / 99.5 percentiles of the foreground voxels (``label > 0``) of the training cases, then
  ``(x - mean) / std`` with their foreground mean and std (:func:`foreground_statistics`, the
  fingerprint's sampling and statistics, :mod:`datamodules.fingerprint`).

:class:`GridTransform` is what one case went through; it is kept in ``Case.extras`` as plain
numbers and arrays (:meth:`GridTransform.to_extras`) and maps class probabilities back
(:meth:`GridTransform.back`): resampling to the reoriented original shape (the image rule:
linear, nearest along the separate axis), then the inverse reorientation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from bench.errors import UserError

ANISO_THRESHOLD = 3.0
"""nnU-Net's ``ANISO_THRESHOLD``: a spacing whose max / min exceeds it is anisotropic."""
ORIENTATIONS: tuple[str, ...] = ("RAS",)
INTENSITIES: tuple[str, ...] = ("zscore", "ct")
_EPS = 1e-8


class PreprocessError(UserError):
    """A preprocessing option cannot be applied to the data (one line naming the option)."""


# ---- argument checks (datamodules.args signature: (cls, value, args) -> problem | None) ----------


def check_spacing(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    """None, or ``spatial_dims`` numbers > 0; not together with ``scale`` != 1."""
    if v is None:
        return None
    dims = int(getattr(cls, "spatial_dims", 3))
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != dims:
        return (
            f"needs {dims} entries [sx, sy{', sz' if dims == 3 else ''}] (the dataset is {dims}D), got {v!r}"
        )
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in v):
        return f"entries must be numbers > 0 (mm), got {list(v)}"
    if args.get("scale", 1.0) not in (1, 1.0):
        return f"cannot be combined with scale={args.get('scale')!r} (spacing resamples already)"
    return None


def check_orientation(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    """None or ``"RAS"`` (3D datasets only); not together with ``scale`` != 1."""
    if v is None:
        return None
    if v not in ORIENTATIONS:
        return f"must be None or one of {list(ORIENTATIONS)}, got {v!r}"
    if int(getattr(cls, "spatial_dims", 3)) != 3:
        return "needs a 3D dataset (an affine to reorient by)"
    if args.get("scale", 1.0) not in (1, 1.0):
        return f"cannot be combined with scale={args.get('scale')!r}"
    return None


def check_intensity(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    """None (the dataset's own rule) or one of :data:`INTENSITIES`."""
    if v is None or v in INTENSITIES:
        return None
    return f"must be None (the dataset's own rule) or one of {list(INTENSITIES)}, got {v!r}"


# ---- resampling ------------------------------------------------------------------------------------


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]
) -> tuple[int, ...]:
    """``round(n * s / t)`` per axis, at least 1 (nnU-Net's ``compute_new_shape``)."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def separate_axis(
    current: Sequence[float], target: Sequence[float], threshold: float = ANISO_THRESHOLD
) -> int | None:
    """The out-of-plane axis resampled with nearest neighbour, or None (see the module docstring).

    The current spacing decides when it is anisotropic, else the target spacing; an anisotropic
    spacing whose largest value is shared by two axes has no separate axis.
    """
    for spacing in (current, target):
        sp = np.asarray(spacing, dtype=np.float64)
        if sp.size > 1 and sp.max() / sp.min() > threshold:
            axes = np.flatnonzero(sp == sp.max())
            return int(axes[0]) if axes.size == 1 else None
    return None


def _zoom(a: np.ndarray, shape: Sequence[int], order: int, axes: Sequence[int]) -> np.ndarray:
    """``a (*spatial)`` resampled to ``shape`` along ``axes`` only (voxel centres aligned)."""
    factors = [shape[i] / a.shape[i] if i in axes else 1.0 for i in range(a.ndim)]
    if all(f == 1.0 for f in factors):
        return a
    out = ndimage.zoom(a, factors, order=order, mode="nearest", grid_mode=True, prefilter=False)
    if out.shape != tuple(shape[i] if i in axes else a.shape[i] for i in range(a.ndim)):
        raise AssertionError(f"resampling gave {out.shape}, expected {tuple(shape)}")  # scipy's rounding
    return out


def resample_image(array: np.ndarray, shape: Sequence[int], axis: int | None) -> np.ndarray:
    """Channels ``array (C, *spatial)`` resampled to ``(C, *shape)``: linear, and nearest along
    ``axis`` (the separate out-of-plane axis, None: linear on every axis). Float32 out."""
    shape = tuple(int(n) for n in shape)
    if array.shape[1:] == shape:
        return array.astype(np.float32, copy=False)
    dims = range(array.ndim - 1)
    inplane = [i for i in dims if i != axis]
    out = []
    for ch in array.astype(np.float32, copy=False):
        ch = _zoom(ch, shape, 1, inplane)
        if axis is not None:
            ch = _zoom(ch, shape, 0, [axis])
        out.append(ch)
    return np.stack(out)


def resample_label(label: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """A label map ``(*spatial)`` resampled to ``shape`` with nearest neighbour (dtype kept)."""
    shape = tuple(int(n) for n in shape)
    if label.shape == shape:
        return label
    return _zoom(label, shape, 0, range(label.ndim))


# ---- orientation -------------------------------------------------------------------------------------


def ras_ornt(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation ``(3, 2)`` taking the array axes of ``affine (4, 4)`` to RAS."""
    import nibabel as nib

    return np.asarray(nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64)), dtype=np.float64)


def inverse_ornt(ornt: np.ndarray) -> np.ndarray:
    """The orientation that undoes ``ornt`` (RAS back to the array's own axes)."""
    import nibabel as nib

    return np.asarray(nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt))


def apply_ornt(array: np.ndarray, ornt: np.ndarray, channels: bool) -> np.ndarray:
    """``array`` (``(C, *spatial)`` when ``channels``, else ``(*spatial)``) with its spatial axes
    permuted and flipped by ``ornt`` (nibabel's ``apply_orientation``); a contiguous copy."""
    import nibabel as nib

    if channels:
        moved = nib.orientations.apply_orientation(np.moveaxis(array, 0, -1), ornt)
        return np.ascontiguousarray(np.moveaxis(moved, -1, 0))
    return np.ascontiguousarray(nib.orientations.apply_orientation(array, ornt))


# ---- one case's grid -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridTransform:
    """What the grid of one case went through: reorientation (``ornt``), then resampling.

    Attributes:
        original_shape: the file's spatial shape.
        original_spacing: the file's voxel size per axis (mm).
        ornt: ``(3, 2)`` nibabel orientation to RAS, or None (not reoriented).
        target_spacing: the resampled voxel size, or None (not resampled).
    """

    original_shape: tuple[int, ...]
    original_spacing: tuple[float, ...]
    ornt: np.ndarray | None = None
    target_spacing: tuple[float, ...] | None = None

    @property
    def oriented_spacing(self) -> tuple[float, ...]:
        """The original spacing in the reoriented axis order."""
        if self.ornt is None:
            return self.original_spacing
        out = list(self.original_spacing)
        for i, (j, _) in enumerate(self.ornt):
            out[int(j)] = self.original_spacing[i]
        return tuple(out)

    @property
    def oriented_shape(self) -> tuple[int, ...]:
        """The original shape in the reoriented axis order."""
        if self.ornt is None:
            return self.original_shape
        out = list(self.original_shape)
        for i, (j, _) in enumerate(self.ornt):
            out[int(j)] = self.original_shape[i]
        return tuple(out)

    @property
    def spacing(self) -> tuple[float, ...]:
        """The voxel size of the preprocessed grid."""
        return self.target_spacing if self.target_spacing is not None else self.oriented_spacing

    @property
    def shape(self) -> tuple[int, ...]:
        """The spatial shape of the preprocessed grid."""
        if self.target_spacing is None:
            return self.oriented_shape
        return resampled_shape(self.oriented_shape, self.oriented_spacing, self.target_spacing)

    def image(self, image: np.ndarray) -> np.ndarray:
        """``image (C, *original_shape)`` on the preprocessed grid: ``(C, *shape)`` float32."""
        if self.ornt is not None:
            image = apply_ornt(image, self.ornt, channels=True)
        if self.target_spacing is None:
            return image.astype(np.float32, copy=False)
        axis = separate_axis(self.oriented_spacing, self.target_spacing)
        return resample_image(image, self.shape, axis)

    def label(self, label: np.ndarray) -> np.ndarray:
        """``label (*original_shape)`` on the preprocessed grid (nearest): ``(*shape)``."""
        if self.ornt is not None:
            label = apply_ornt(label, self.ornt, channels=False)
        return label if self.target_spacing is None else resample_label(label, self.shape)

    def back(self, array: np.ndarray) -> np.ndarray:
        """``array (C, *shape)`` (probabilities, an image) on the original grid ``(C,
        *original_shape)`` float32: resampled like an image (linear, nearest along the separate
        axis, decided from the preprocessed and the original spacing), then reoriented back."""
        if tuple(array.shape[1:]) != self.shape:
            raise ValueError(f"expected (C, *{self.shape}) on the preprocessed grid, got {array.shape}")
        out = array.astype(np.float32, copy=False)
        if self.target_spacing is not None:
            axis = separate_axis(self.target_spacing, self.oriented_spacing)
            out = resample_image(out, self.oriented_shape, axis)
        if self.ornt is not None:
            out = apply_ornt(out, inverse_ornt(self.ornt), channels=True)
        return out

    def to_extras(self) -> dict[str, Any]:
        """JSON-able values (and one array) for ``Case.extras``; :meth:`from_extras` reads them."""
        return {
            "original_shape": [int(n) for n in self.original_shape],
            "original_spacing": [float(s) for s in self.original_spacing],
            "orientation_transform": None if self.ornt is None else np.asarray(self.ornt, dtype=np.float64),
            "target_spacing": None
            if self.target_spacing is None
            else [float(s) for s in self.target_spacing],
        }

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> GridTransform:
        """The transform :meth:`to_extras` wrote into a case's extras."""
        ornt = extras.get("orientation_transform")
        target = extras.get("target_spacing")
        return cls(
            tuple(int(n) for n in extras["original_shape"]),
            tuple(float(s) for s in extras["original_spacing"]),
            None if ornt is None else np.asarray(ornt, dtype=np.float64),
            None if target is None else tuple(float(s) for s in target),
        )


def plan_grid(
    shape: Sequence[int],
    spacing: Sequence[float] | None,
    affine: np.ndarray | None,
    *,
    target_spacing: Sequence[float] | None = None,
    orientation: str | None = None,
    where: str = "",
) -> GridTransform:
    """The :class:`GridTransform` of a case of spatial ``shape``, ``spacing`` and ``affine``.

    Raises:
        PreprocessError: ``orientation`` without an affine (names ``where``, the file).
    """
    ornt = None
    if orientation is not None:
        if affine is None:
            raise PreprocessError(
                f"{where}: orientation {orientation!r} needs an affine (a NIfTI or ITK volume)"
            )
        ornt = ras_ornt(affine)
    spacing = tuple(float(s) for s in (spacing or (1.0,) * len(shape)))
    target = None if target_spacing is None else tuple(float(s) for s in target_spacing)
    return GridTransform(tuple(int(n) for n in shape), spacing, ornt, target)


# ---- intensities -------------------------------------------------------------------------------------


def foreground_statistics(
    cases: Iterable[tuple[np.ndarray, np.ndarray]], num_cases: int, channels: Sequence[str]
) -> list[dict[str, Any]]:
    """Per-channel foreground statistics (``mean``, ``std``, ``percentile_00_5``,
    ``percentile_99_5`` ...) of ``cases`` (``(image (C, *spatial) as stored, label)`` pairs), by
    the fingerprint's own sampling and statistics (:mod:`datamodules.fingerprint`).

    Raises:
        PreprocessError: a channel without foreground voxels.
    """
    from datamodules.fingerprint import FG_SAMPLES, foreground_sample, intensity_stats

    per_case = max(FG_SAMPLES // max(num_cases, 1), 1)
    samples: list[list[np.ndarray]] = [[] for _ in channels]
    for i, (image, label) in enumerate(cases):
        for c, values in enumerate(foreground_sample(image, label, per_case, i)[: len(channels)]):
            samples[c].append(values)
    stats = []
    for name, parts in zip(channels, samples):
        s = intensity_stats(np.concatenate(parts) if parts else np.zeros(0))
        if s["mean"] is None:
            raise PreprocessError(
                f"intensity 'ct': channel {name!r} has no foreground voxel in the training cases"
            )
        stats.append({"channel": name, **s})
    return stats


def ct_normalise(image: np.ndarray, stats: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """nnU-Net's CTNormalization of ``image (C, *spatial)``: per channel, clip to
    ``[percentile_00_5, percentile_99_5]`` then ``(x - mean) / max(std, 1e-8)``. Float32 out."""
    out = np.empty(image.shape, dtype=np.float32)
    for c, s in enumerate(stats):
        clipped = np.clip(image[c], s["percentile_00_5"], s["percentile_99_5"])
        out[c] = (clipped - s["mean"]) / max(float(s["std"]), _EPS)
    return out
