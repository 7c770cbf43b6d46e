"""Multi-rater evaluation: calibration against several annotators, volume as a random variable,
Dice against a consensus (the CURVAS challenge, MICCAI 2024: Riera-Marín et al. 2025,
"Calibration and Uncertainty for multiRater Volume Assessment in multiorgan Segmentation").

The challenge's evaluation script (``SYCAI-Technologies/curvas-challenge``,
``evaluation_metrics/metrics.py``) defines three metrics per case; segbench's versions and where
they differ are stated in each docstring and in ``docs/metrics.md``:

* ECE: torchmetrics' top-label ``MulticlassCalibrationError`` with 50 bins against each rater's
  labels, averaged over raters (:func:`ece_raters`); :func:`ece_soft` is the ECE against the
  raters' mean label instead.
* CRPS of the volume: the raters' volumes define a Gaussian, the prediction's volume
  ``Σ p · voxel volume`` is the observation (:func:`crps_volume`); :func:`crps_volume_predictive`
  scores the prediction's own volume distribution against each rater's volume.
* Dice on the voxels where all raters agree (:func:`consensus_dice`); :func:`dice_to_consensus`
  is the Dice against the strict-majority label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import norm

from bench.metrics._binning import bin_edges, bin_index
from bench.metrics._convert import ArrayLike, spacing_tuple, to_numpy
from bench.metrics.calibration import expected_calibration_error
from bench.metrics.functional import _dice_compute

CURVAS_N_BINS = 50  # the challenge's number of ECE bins


def rater_mean(labels: ArrayLike, num_classes: int) -> np.ndarray:
    """The raters' mean label (soft target).

    Args:
        labels: ``(R, *S)`` integer label maps of R raters, labels in ``[0, num_classes)``.
        num_classes: C.

    Returns:
        ``(C, *S)`` float64: the fraction of raters giving each class (sums to 1 per voxel).
    """
    lab = to_numpy(labels, "labels")
    if lab.ndim < 2 or lab.shape[0] < 1:
        raise ValueError(f"`labels` must be (R, *spatial), got shape {lab.shape}.")
    if lab.min() < 0 or lab.max() >= num_classes:
        raise ValueError(f"`labels` must lie in [0, {num_classes}).")
    return np.stack([(lab == c).mean(axis=0) for c in range(num_classes)]).astype(np.float64)


def ece_soft(prob: ArrayLike, soft_target: ArrayLike, bins: int = 10) -> float:
    """Top-label ECE against the raters' mean label.

    Per voxel: confidence ``max_c p_c``, accuracy ``soft_target[argmax_c p_c]`` (the fraction of
    raters who give the predicted class). Bins as :func:`~bench.metrics.expected_calibration_error`
    (torchmetrics' equal-width bins ``[b_i, b_{i+1})``, confidence 1.0 in a bin of its own);
    ``ECE = Σ_b |Σ acc_b − Σ conf_b| / N``. With one rater it equals the ordinary top-label ECE;
    it is at most :func:`ece_raters` with the same bins (the mean of the per-rater absolute
    gaps is at least the absolute gap of the mean). Zero when ``prob == soft_target``.

    Args:
        prob: ``(C, *S)`` class probabilities.
        soft_target: ``(C, *S)`` raters' mean label (:func:`rater_mean`).
        bins: number of equal-width bins on [0, 1].

    Returns:
        ECE in ``[0, 1]``.
    """
    p = to_numpy(prob, "prob").astype(np.float64)
    t = to_numpy(soft_target, "soft_target").astype(np.float64)
    if p.shape != t.shape or p.ndim < 2:
        raise ValueError(f"`prob` {p.shape} and `soft_target` {t.shape} must both be (C, *spatial).")
    p, t = p.reshape(p.shape[0], -1), t.reshape(t.shape[0], -1)
    top = p.argmax(axis=0)
    conf = p.max(axis=0)
    acc = np.take_along_axis(t, top[None], axis=0)[0]
    idx = bin_index(conf, bin_edges(bins, conf.dtype))
    gap = np.bincount(idx, weights=acc, minlength=bins + 1) - np.bincount(
        idx, weights=conf, minlength=bins + 1
    )
    return float(np.abs(gap).sum() / conf.size)


def ece_raters(prob: ArrayLike, labels: ArrayLike, bins: int = CURVAS_N_BINS) -> float:
    """CURVAS's ECE: top-label ECE of ``prob`` against each rater's labels, mean over raters.

    The challenge computes torchmetrics' ``MulticlassCalibrationError(n_bins=50)`` per rater;
    each term here is :func:`~bench.metrics.expected_calibration_error` in class form, equal to
    torchmetrics'.

    Args:
        prob: ``(C, *S)`` class probabilities (channel 0 = background).
        labels: ``(R, *S)`` integer label maps of the raters.
        bins: number of bins (the challenge's 50 by default).

    Returns:
        Mean ECE over raters, in ``[0, 1]``.
    """
    lab = to_numpy(labels, "labels")
    return float(
        np.mean([expected_calibration_error(prob, lab[r], n_bins=bins) for r in range(lab.shape[0])])
    )


def _voxel_volume(spacing: float | Sequence[float] | None, ndim: int) -> float:
    return float(np.prod(spacing_tuple(spacing, ndim)))


def volume_distribution(
    prob_fg: ArrayLike, spacing: float | Sequence[float] | None = None
) -> tuple[float, float]:
    """The predicted volume as a random variable: ``V = v · Σ_i B_i``, ``B_i ~ Bernoulli(p_i)``
    independent per voxel, ``v`` the voxel volume (Poisson-binomial count).

    Args:
        prob_fg: ``(*S)`` foreground probabilities.
        spacing: voxel size per axis (or one number); ``None`` = 1.

    Returns:
        ``(mean, variance)`` = ``(v Σ p, v² Σ p (1 − p))``, in the units of ``spacing`` cubed.
    """
    p = to_numpy(prob_fg, "prob_fg").astype(np.float64)
    v = _voxel_volume(spacing, p.ndim)
    return float(v * p.sum()), float(v * v * (p * (1.0 - p)).sum())


def crps_gaussian(mean: float, std: float, y: float) -> float:
    """CRPS of a Gaussian forecast ``N(mean, std²)`` at the observation ``y`` (Gneiting &
    Raftery 2007): ``σ [z (2Φ(z) − 1) + 2φ(z) − 1/√π]``, ``z = (y − μ) / σ``; ``|y − μ|`` for
    ``σ = 0`` (a point forecast)."""
    if std < 0:
        raise ValueError(f"`std` must be >= 0, got {std}.")
    if std == 0:
        return float(abs(y - mean))
    z = (y - mean) / std
    return float(std * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi)))


def crps_volume(
    prob_fg: ArrayLike, rater_volumes: ArrayLike, spacing: float | Sequence[float] | None = None
) -> float:
    """CURVAS's volume CRPS: the raters' volumes as a Gaussian forecast, the prediction's
    expected volume as the observation.

    ``μ_r, σ_r`` = mean and population standard deviation (``ddof = 0``, as the challenge's
    ``np.std``) of ``rater_volumes``; the observation is ``v̂ = v Σ p``; the value is
    :func:`crps_gaussian` ``(μ_r, σ_r, v̂)``, the integral of ``(Φ((x − μ_r)/σ_r) − 1{x ≥ v̂})²``
    over the whole real line. The challenge's script integrates numerically over ``μ_r ± 3σ_r``
    only, with the CDF interpolated on 100 points between its 1 % and 99 % quantiles; its
    values are smaller when ``v̂`` lies outside ``μ_r ± 3σ_r`` and 0 when the raters agree
    (``σ_r = 0``), where this one gives ``|v̂ − μ_r|``.

    Args:
        prob_fg: ``(*S)`` foreground probabilities of one class.
        rater_volumes: ``(R,)`` the raters' volumes of that class, in the units of ``spacing``
            cubed (voxel count × voxel volume).
        spacing: voxel size per axis; ``None`` = 1.

    Returns:
        CRPS in volume units (lower is better).
    """
    y = to_numpy(rater_volumes, "rater_volumes").astype(np.float64).ravel()
    if y.size == 0:
        raise ValueError("`rater_volumes` must not be empty.")
    observed, _ = volume_distribution(prob_fg, spacing)
    return crps_gaussian(float(y.mean()), float(y.std()), observed)


def crps_volume_predictive(
    prob_fg: ArrayLike, rater_volumes: ArrayLike, spacing: float | Sequence[float] | None = None
) -> float:
    """CRPS of the prediction's volume distribution, mean over the raters' volumes.

    The forecast is the Gaussian approximation ``N(μ, σ²)`` of :func:`volume_distribution`
    (Poisson-binomial mean and variance); the value is ``mean_r crps_gaussian(μ, σ, y_r)``
    (``|y_r − μ|`` when every probability is 0 or 1).

    Args:
        prob_fg: ``(*S)`` foreground probabilities of one class.
        rater_volumes: ``(R,)`` the raters' volumes, in the units of ``spacing`` cubed.
        spacing: voxel size per axis; ``None`` = 1.

    Returns:
        CRPS in volume units (lower is better).
    """
    y = to_numpy(rater_volumes, "rater_volumes").astype(np.float64).ravel()
    if y.size == 0:
        raise ValueError("`rater_volumes` must not be empty.")
    mean, var = volume_distribution(prob_fg, spacing)
    return float(np.mean([crps_gaussian(mean, math.sqrt(var), float(v)) for v in y]))


def rater_volumes(labels: ArrayLike, c: int, spacing: float | Sequence[float] | None = None) -> np.ndarray:
    """``(R,)`` volume of class ``c`` in each rater's ``(R, *S)`` label map (count × voxel volume)."""
    lab = to_numpy(labels, "labels")
    v = _voxel_volume(spacing, lab.ndim - 1)
    return (lab == c).reshape(lab.shape[0], -1).sum(axis=1) * v


def _masks(pred: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, lab = to_numpy(pred, "pred").astype(bool), to_numpy(labels, "labels").astype(bool)
    if lab.shape[1:] != p.shape:
        raise ValueError(f"`labels` {lab.shape} must be (R, *pred.shape) with pred {p.shape}.")
    return p, lab


def _dice(p: np.ndarray, g: np.ndarray) -> float:
    return float(_dice_compute(np.count_nonzero(p & g), np.count_nonzero(p), np.count_nonzero(g)))


def dice_to_consensus(pred: ArrayLike, labels: ArrayLike) -> float:
    """Dice of a binary prediction against the raters' strict-majority consensus.

    A voxel is foreground in the consensus when more than half of the R raters mark it
    (``count > R / 2``); a tie (R even, half the raters) is background.

    Args:
        pred: ``(*S)`` binary prediction of one class.
        labels: ``(R, *S)`` binary masks of that class, one per rater.

    Returns:
        Dice; empty rule as ``dice``: both empty NaN, one empty 0.
    """
    p, lab = _masks(pred, labels)
    return _dice(p, 2 * lab.sum(axis=0) > lab.shape[0])


def consensus_dice(pred: ArrayLike, labels: ArrayLike) -> float:
    """CURVAS's consensus Dice: Dice on the voxels where all raters agree.

    Voxels where the raters disagree (some foreground, some background) are removed from the
    prediction; the truth is the unanimous foreground. As the challenge (MONAI ``DiceMetric``
    with ``ignore_empty=True``): NaN when the unanimous foreground is empty.

    Args:
        pred: ``(*S)`` binary prediction of one class.
        labels: ``(R, *S)`` binary masks of that class, one per rater.
    """
    p, lab = _masks(pred, labels)
    fg, bg = lab.all(axis=0), ~lab.any(axis=0)
    if not fg.any():
        return float("nan")
    return _dice(p & (fg | bg), fg)
