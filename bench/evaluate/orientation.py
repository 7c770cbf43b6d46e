"""NIfTI geometry checks of ``segbench evaluate``: a prediction must lie on its ground truth's grid.

Spacing alone does not say that: a prediction written in another orientation (LPS instead of RAS,
axes permuted, one axis flipped) has the same zooms and shape, and scores as if it were a poor
segmentation. When both files are NIfTI (the ground truth a file of ``--gt``, or the label file a
DataModule read in dataset mode), their affines are compared:

- the axis orientation (nibabel's ``io_orientation``: which world axis each array axis runs along,
  and in which direction) must be the same, or the prediction is an error naming the file; with
  ``--reorient`` its array is flipped / transposed onto the ground truth's orientation
  (``nibabel.orientations.apply_orientation``) and its affine updated to match;
- then the whole affine must agree: direction and zooms within ``rtol`` (NIfTI stores them as
  float32), the origin within :data:`ORIGIN_TOLERANCE` of a voxel. A prediction shifted by a
  voxel or more is an error naming the file (``--reorient`` never moves voxels).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from datamodules.readers import CaseLoadError

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
ORIGIN_TOLERANCE = 0.5
"""Largest origin difference accepted, in voxels of the ground truth (the voxel centres coincide)."""


def nifti_affine(path: str | os.PathLike[str] | None) -> np.ndarray | None:
    """The ``(4, 4)`` voxel -> world affine of a NIfTI file (header only), None for other files."""
    if path is None or not str(path).lower().endswith(NIFTI_SUFFIXES):
        return None
    try:
        return np.asarray(nib.load(str(path)).affine, dtype=np.float64)
    except Exception as e:  # noqa: BLE001 - nibabel raises several types for a bad header
        raise CaseLoadError(f"{path}: cannot read the NIfTI header ({type(e).__name__}: {e})") from e


def same_orientation(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two affines' array axes run along the same world axes in the same directions."""
    return bool(np.array_equal(io_orientation(a), io_orientation(b)))


def axis_codes(affine: np.ndarray) -> str:
    """``"RAS"``, ``"LPS"`` ...: the world direction each array axis runs towards."""
    return "".join(nib.aff2axcodes(affine))


def match_grid(
    pred: np.ndarray,
    pred_affine: np.ndarray,
    gt_affine: np.ndarray,
    where: str | Path,
    *,
    reorient: bool = False,
    rtol: float = 1e-4,
) -> np.ndarray:
    """Check (and with ``reorient`` fix) the prediction's orientation against the ground truth's.

    Args:
        pred: the prediction as read, ``(X, Y, Z)`` labels or ``(C, X, Y, Z)`` probabilities (3D only).
        pred_affine: its file's ``(4, 4)`` affine.
        gt_affine: the ground truth file's ``(4, 4)`` affine.
        where: the prediction file, named in every error.
        reorient: flip / transpose a prediction in another orientation onto the ground truth's.
        rtol: relative tolerance of direction and zooms.

    Returns:
        ``pred``, or its reoriented copy (same leading channel axis).

    Raises:
        CaseLoadError: another orientation (without ``reorient``), another spacing (per array axis,
            after reorienting), or affines that still differ (direction, origin).
    """
    mine, theirs = io_orientation(pred_affine), io_orientation(gt_affine)
    if not np.array_equal(mine, theirs):
        if not reorient:
            raise CaseLoadError(
                f"{where}: orientation {axis_codes(pred_affine)} differs from the ground truth's "
                f"{axis_codes(gt_affine)} (flipped or permuted axes); write it on the ground truth's "
                "grid, or pass --reorient"
            )
        transform = ornt_transform(mine, theirs)
        shape = pred.shape[-3:]
        if pred.ndim == 4:
            pred = np.stack([apply_orientation(c, transform) for c in pred])
        else:
            pred = apply_orientation(pred, transform)
        pred_affine = pred_affine @ inv_ornt_aff(transform, shape)
    mine_zooms, their_zooms = (np.linalg.norm(a[:3, :3], axis=0) for a in (pred_affine, gt_affine))
    if not np.allclose(mine_zooms, their_zooms, rtol=rtol, atol=0.0):
        raise CaseLoadError(
            f"{where}: spacing {tuple(round(float(z), 6) for z in mine_zooms)} differs from the ground "
            f"truth's {tuple(round(float(z), 6) for z in their_zooms)}"
        )
    linear_ok = np.allclose(pred_affine[:3, :3], gt_affine[:3, :3], rtol=rtol, atol=1e-6)
    voxel = their_zooms.min()
    shift = float(np.linalg.norm(pred_affine[:3, 3] - gt_affine[:3, 3]))
    if not linear_ok or shift > ORIGIN_TOLERANCE * voxel:
        what = "direction or voxel size" if not linear_ok else f"origin (off by {shift:.3g} mm)"
        raise CaseLoadError(f"{where}: affine differs from the ground truth's in its {what}")
    return np.ascontiguousarray(pred)
