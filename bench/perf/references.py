"""Independent reference implementations used by the tests and the speed script.

Each wraps a third-party library (gudhi, scikit-image with the paper's formula,
torchmetrics, MONAI) with no code shared with ``bench.metrics``.
"""

from __future__ import annotations

import gudhi
import numpy as np
import torch
from skimage.morphology import skeletonize


def gudhi_betti(mask: np.ndarray, dual: bool = False) -> tuple[int, ...]:
    """Betti numbers of the foreground with gudhi cubical persistence.

    Foreground voxels get filtration 0, background 1; the Betti numbers of the sublevel
    set at 0 are the classes born at 0 that are still alive at 0. ``dual=False`` puts the
    values on top-dimensional cells (foreground 8/26-connected); ``dual=True`` puts them on
    vertices (foreground 4/6-connected).
    """
    f = np.where(mask.astype(bool), 0.0, 1.0)
    cc = gudhi.CubicalComplex(vertices=f) if dual else gudhi.CubicalComplex(top_dimensional_cells=f)
    cc.compute_persistence(homology_coeff_field=2, min_persistence=0)
    # classes born at or before 0 and still alive after 0 (deaths at 1 or never)
    return tuple(int(b) for b in cc.persistent_betti_numbers(0.0, 0.0)[: mask.ndim])


def paper_cldice(pred: np.ndarray, gt: np.ndarray) -> float:
    """clDice exactly as the paper's code (``cl_score`` on skimage skeletons), full image.

    Adds the empty rules of ``bench.metrics.cldice``: both empty → NaN, one empty → 0,
    an empty skeleton of a non-empty mask is replaced by the mask.
    """
    pred, gt = pred.astype(bool), gt.astype(bool)
    if not pred.any() and not gt.any():
        return float("nan")
    if not pred.any() or not gt.any():
        return 0.0

    def cl_score(v: np.ndarray, s: np.ndarray) -> float:
        return float(np.sum(v * s) / np.sum(s))

    sp, sg = skeletonize(pred), skeletonize(gt)
    sp = sp if sp.any() else pred
    sg = sg if sg.any() else gt
    tprec, tsens = cl_score(gt, sp), cl_score(pred, sg)
    return 0.0 if tprec + tsens == 0 else 2 * tprec * tsens / (tprec + tsens)


def torchmetrics_ece(prob: np.ndarray, gt: np.ndarray, n_bins: int | None = None) -> float:
    """torchmetrics ``binary_calibration_error`` (p = foreground probability) or, for
    ``prob`` shaped (C, *spatial), ``multiclass_calibration_error`` (top-label); ``n_bins=None``
    uses torchmetrics' own default."""
    from torchmetrics.functional.classification import (
        binary_calibration_error,
        multiclass_calibration_error,
    )

    p, t = torch.as_tensor(prob), torch.as_tensor(gt).long()
    bins = {} if n_bins is None else {"n_bins": n_bins}
    if p.ndim == t.ndim:
        return float(binary_calibration_error(p.reshape(-1), t.reshape(-1), **bins))
    c = p.shape[0]
    return float(multiclass_calibration_error(p.reshape(c, -1).T, t.reshape(-1), num_classes=c, **bins))


def _onehot_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.as_tensor(pred.astype(bool))[None, None].float()
    g = torch.as_tensor(gt.astype(bool))[None, None].float()
    return p, g


def monai_hd95(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...] | None = None) -> float:
    """MONAI ``compute_hausdorff_distance(percentile=95)`` on one binary mask pair."""
    import warnings

    from monai.metrics import compute_hausdorff_distance

    p, g = _onehot_pair(pred, gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=spacing)
        )


def monai_nsd(
    pred: np.ndarray, gt: np.ndarray, tolerance: float, spacing: tuple[float, ...] | None = None
) -> float:
    """MONAI ``compute_surface_dice`` (edge voxels, no sub-voxel areas) on one mask pair."""
    import warnings

    from monai.metrics import compute_surface_dice

    p, g = _onehot_pair(pred, gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_surface_dice(p, g, [tolerance], include_background=True, spacing=spacing))
