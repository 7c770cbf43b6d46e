"""Calibration metrics: expected calibration error, Brier score, reliability-diagram data.

Binning follows torchmetrics' ``binary_calibration_error`` exactly: boundaries
``torch.linspace(0, 1, n_bins + 1)`` in the probabilities' dtype, bin index
``bucketize(conf, boundaries, right=True) - 1``, so bin ``i`` is ``[b_i, b_{i+1})`` and a
confidence of exactly 1.0 lands in an extra bin ``n_bins`` of its own. Sums are float64
(torchmetrics sums in the input dtype, so with float32 input and many voxels its own
rounding error exceeds 1e-6; with float64 input the two agree to ~1e-12).

With per-bin sufficient statistics (count, Σ confidence, Σ accuracy) the ECE reduces to
``Σ_b |Σacc_b − Σconf_b| / N``, which is what makes one ``bincount`` pass enough.
"""

from __future__ import annotations

import numpy as np

from bench.metrics._binning import bin_edges, binned_stats, chunks
from bench.metrics._convert import ArrayLike, check_labels, check_probabilities, check_same_shape, to_numpy
from bench.metrics.settings import MetricSettings  # its defaults are the only ones (n_bins)


def _confidence_accuracy(
    prob: ArrayLike, target: ArrayLike, mask: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Flattens inputs to (probabilities ``(N,)`` or ``(C, N)``, labels ``(N,)``, multiclass)."""
    p, t = to_numpy(prob, "prob"), to_numpy(target, "target")
    check_probabilities(p, "prob")
    if p.ndim == t.ndim:
        check_same_shape(p, t, "prob", "target")
        check_labels(t, 2, "target")
        multiclass = False
    elif p.ndim == t.ndim + 1:
        check_same_shape(p[0], t, "prob[0]", "target")
        if p.shape[0] < 2:
            raise ValueError(f"class probabilities `prob` need C >= 2 channels, got shape {tuple(p.shape)}.")
        check_labels(t, p.shape[0], "target")
        multiclass = True
    else:
        raise ValueError(
            f"`prob` must be shaped like `target` (binary) or (C, *target.shape); got {tuple(p.shape)} "
            f"and {tuple(t.shape)}."
        )
    if mask is not None:
        m = to_numpy(mask, "mask")
        check_same_shape(m, t, "mask", "target")
        check_labels(m, 2, "mask")
        m = m.astype(bool)
        t = t[m]
        p = p[:, m] if multiclass else p[m]
    return (p.reshape(p.shape[0], -1) if multiclass else p.reshape(-1)), t.reshape(-1), multiclass


def calibration_stats(
    prob: ArrayLike, target: ArrayLike, *, n_bins: int = MetricSettings.n_bins, mask: ArrayLike | None = None
) -> np.ndarray:
    """Per-bin sufficient statistics for ECE and reliability diagrams.

    Args:
        prob: foreground probabilities shaped like ``target`` (binary ECE: confidence = p,
            accuracy = target), or class probabilities ``(C, *spatial)`` (top-label ECE:
            confidence = max_c p, accuracy = [argmax == target]). Values in [0, 1].
        target: ``(*spatial)`` integer labels ({0, 1} for the binary form).
        n_bins: number of equal-width bins on [0, 1].
        mask: optional ``(*spatial)`` bool field of view; only voxels inside count.

    Returns:
        ``(3, n_bins + 1)`` float64 array: counts, Σ confidence, Σ accuracy per bin (the
        last bin holds confidences equal to 1.0). Sum these over cases for a pooled ECE.

    Raises:
        ValueError: on non-finite or out-of-range probabilities, bad labels or shapes.
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"`n_bins` must be a positive int, got {n_bins!r}.")
    p, t, multiclass = _confidence_accuracy(prob, target, mask)
    return binned_stats(chunks(p, t, multiclass), bin_edges(n_bins, p.dtype))


def _ece_compute(stats: np.ndarray) -> float:
    """ECE from ``calibration_stats``; NaN when no voxel was counted."""
    n = float(stats[0].sum())
    return float("nan") if n == 0 else float(np.abs(stats[2] - stats[1]).sum()) / n


def expected_calibration_error(
    prob: ArrayLike, target: ArrayLike, *, n_bins: int = MetricSettings.n_bins, mask: ArrayLike | None = None
) -> float:
    """Expected calibration error (L1), equal to torchmetrics' binary/multiclass version.

    ``ECE = Σ_b (n_b / N) |acc_b − conf_b|`` over ``n_bins`` equal-width bins (plus the
    torchmetrics bin for confidence exactly 1.0). Inputs as in :func:`calibration_stats`.

    Returns:
        ECE in [0, 1]; NaN when ``mask`` selects no voxel.
    """
    return _ece_compute(calibration_stats(prob, target, n_bins=n_bins, mask=mask))


def brier_score(prob: ArrayLike, target: ArrayLike, *, mask: ArrayLike | None = None) -> float:
    """Brier score: mean squared error between probabilities and one-hot truth.

    Binary form (``prob`` shaped like ``target``): ``mean((p − y)²)``. Class form
    ``(C, *spatial)``: ``mean_voxels Σ_c (p_c − [y = c])²`` (so a 2-channel input gives
    twice the binary value).

    Returns:
        Brier score in [0, 1] (binary) or [0, 2] (class form); NaN when ``mask`` is empty.
    """
    p, t, multiclass = _confidence_accuracy(prob, target, mask)
    if t.size == 0:
        return float("nan")
    p = p.astype(np.float64)
    if not multiclass:
        return float(np.mean((p - t) ** 2))
    hit = np.take_along_axis(p, t.astype(np.intp)[None], axis=0)[0]
    return float(np.mean((p**2).sum(0) - 2 * hit + 1))


def reliability_diagram(
    prob: ArrayLike, target: ArrayLike, *, n_bins: int = MetricSettings.n_bins, mask: ArrayLike | None = None
) -> dict[str, np.ndarray]:
    """Data for a reliability diagram (plotting is left to the caller).

    The torchmetrics bin for confidence 1.0 is merged into the top bin ``[1 − 1/n, 1]``.

    Returns:
        ``bin_centers``, ``accuracy``, ``confidence`` (NaN for empty bins) and ``counts``,
        each a ``(n_bins,)`` float64 array.
    """
    s = calibration_stats(prob, target, n_bins=n_bins, mask=mask)
    s = np.concatenate([s[:, : n_bins - 1], s[:, n_bins - 1 :].sum(1, keepdims=True)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc, conf = s[2] / s[0], s[1] / s[0]
    return {
        "bin_centers": (np.arange(n_bins) + 0.5) / n_bins,
        "accuracy": acc,
        "confidence": conf,
        "counts": s[0],
    }
