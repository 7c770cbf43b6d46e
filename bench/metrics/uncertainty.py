"""Uncertainty and out-of-distribution (OOD) scores: per case, and their quality over cases.

Per case, a voxel score map is reduced to one number by the mean over the case's voxels, or
over the voxels inside ``fov`` when it is given (NaN when ``fov`` selects no voxel). Every
per-case score follows one sign convention: **higher = more uncertain** (more likely OOD).

Over cases: :func:`aurc` (selective prediction: does rejecting the most uncertain cases lower
the risk?), :func:`spearman` (does uncertainty track Dice?) and :func:`auroc` (do OOD cases
score higher than in-distribution ones?).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from bench.metrics._convert import ArrayLike, to_numpy


def _voxel_mean(score: np.ndarray, fov: ArrayLike | None) -> float:
    """Mean of a ``(*S)`` voxel map over all voxels or those inside ``fov``; NaN when empty."""
    if fov is not None:
        m = to_numpy(fov, "fov").astype(bool)
        if m.shape != score.shape:
            raise ValueError(f"`fov` {m.shape} must have the spatial shape {score.shape}.")
        score = score[m]
    return float(score.mean()) if score.size else float("nan")


def _prob(prob: ArrayLike, name: str = "prob") -> np.ndarray:
    p = to_numpy(prob, name).astype(np.float64)
    if p.ndim < 2 or p.shape[0] < 2:
        raise ValueError(f"`{name}` must be (C, *spatial) with C >= 2, got shape {p.shape}.")
    return p


def _entropy_map(p: np.ndarray) -> np.ndarray:
    """``−Σ_c p_c log p_c`` over axis 0 (natural log, ``0 log 0 = 0``)."""
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=0)


def max_softmax(prob: ArrayLike, *, fov: ArrayLike | None = None) -> float:
    """Maximum-softmax-probability uncertainty (Hendrycks & Gimpel 2017), as ``1 − max_c p``.

    Args:
        prob: ``(C, *S)`` class probabilities (softmax output).
        fov: optional ``(*S)`` bool field of view.

    Returns:
        Mean over voxels of ``1 − max_c p_c``, in ``[0, 1 − 1/C]``; higher = more uncertain.
    """
    p = _prob(prob)
    return _voxel_mean(1.0 - p.max(axis=0), fov)


def entropy(prob: ArrayLike, *, fov: ArrayLike | None = None) -> float:
    """Predictive entropy ``−Σ_c p_c log p_c`` (natural log), mean over voxels.

    Args:
        prob: ``(C, *S)`` class probabilities.
        fov: optional ``(*S)`` bool field of view.

    Returns:
        Value in ``[0, log C]`` (``log C`` for a uniform map); higher = more uncertain.
    """
    return _voxel_mean(_entropy_map(_prob(prob)), fov)


def energy(logits: ArrayLike, *, T: float = 1.0, fov: ArrayLike | None = None) -> float:  # noqa: N803
    """Energy score (Liu et al. 2020, "Energy-based Out-of-distribution Detection").

    ``E(x) = −T · logsumexp_c(logits_c / T)`` per voxel, mean over voxels.

    Args:
        logits: ``(C, *S)`` pre-softmax outputs.
        T: temperature (> 0).
        fov: optional ``(*S)`` bool field of view.

    Returns:
        The mean energy; higher = more OOD (lower logits overall).
    """
    if T <= 0:
        raise ValueError(f"`T` must be > 0, got {T}.")
    z = torch.as_tensor(to_numpy(logits, "logits"), dtype=torch.float64)
    if z.ndim < 2:
        raise ValueError(f"`logits` must be (C, *spatial), got shape {tuple(z.shape)}.")
    e = (-T * torch.logsumexp(z / T, dim=0)).numpy()
    return _voxel_mean(e, fov)


def model_ood(ood: ArrayLike, *, fov: ArrayLike | None = None) -> float:
    """A network's own per-voxel OOD map reduced to one case score: its mean over the voxels.

    Args:
        ood: ``(*S)`` per-voxel OOD scores, higher = more anomalous (MaskFormer's RbA,
            ``-sum_k tanh(semantic_k)`` in ``(-K, 0]``: Nayal et al. 2023).
        fov: optional ``(*S)`` bool field of view.

    Returns:
        The mean over the voxels (inside ``fov``); NaN when ``fov`` selects none.
    """
    return _voxel_mean(to_numpy(ood, "ood").astype(np.float64), fov)


def mutual_information(samples: ArrayLike, *, fov: ArrayLike | None = None) -> float:
    """Mutual information between prediction and model (BALD; Gal et al. 2017).

    ``MI = H(mean_m p_m) − mean_m H(p_m)`` per voxel (natural log), mean over voxels: the
    epistemic part of the predictive entropy.

    Args:
        samples: ``(M, C, *S)`` class probabilities of M stochastic passes (MC dropout) or
            ensemble members (e.g. seeds).
        fov: optional ``(*S)`` bool field of view.

    Returns:
        Value in ``[0, log C]`` (0 when all samples agree); higher = more uncertain.
    """
    s = to_numpy(samples, "samples").astype(np.float64)
    if s.ndim < 3 or s.shape[1] < 2:
        raise ValueError(f"`samples` must be (M, C, *spatial) with C >= 2, got shape {s.shape}.")
    mi = _entropy_map(s.mean(axis=0)) - np.mean([_entropy_map(p) for p in s], axis=0)
    return _voxel_mean(np.maximum(mi, 0.0), fov)  # clip float rounding below 0


def _pair(a: ArrayLike, b: ArrayLike, na: str, nb: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = to_numpy(a, na).astype(np.float64).ravel(), to_numpy(b, nb).astype(np.float64).ravel()
    if x.size != y.size or x.size == 0:
        raise ValueError(f"`{na}` and `{nb}` must be non-empty and of equal length, got {x.size}, {y.size}.")
    return x, y


def aurc(uncertainty: ArrayLike, risk: ArrayLike) -> float:
    """Area under the risk-coverage curve (Geifman & El-Yaniv 2017, "Selective classification").

    Cases are accepted in order of increasing uncertainty; the risk at coverage ``k / N`` is the
    mean risk of the ``k`` accepted cases, and ``AURC = (1/N) Σ_{k=1..N} risk(k/N)``. For
    segmentation the risk of a case is ``1 − Dice``. Ties: cases with equal uncertainty are
    accepted in random order, and the value is its expectation (each tied case contributes the
    mean risk of its tie group), so it does not depend on the input order.

    Args:
        uncertainty: ``(N,)`` per-case uncertainty (higher = more uncertain).
        risk: ``(N,)`` per-case risk (e.g. ``1 − Dice``).

    Returns:
        AURC (lower is better); the oracle (uncertainty ordered as risk) gives its minimum.
    """
    u, r = _pair(uncertainty, risk, "uncertainty", "risk")
    order = np.argsort(u, kind="stable")
    u, r = u[order], r[order]
    _, group, counts = np.unique(u, return_inverse=True, return_counts=True)
    group_mean = np.bincount(group, weights=r) / counts
    risk_at = np.cumsum(group_mean[group]) / np.arange(1, u.size + 1)
    return float(risk_at.mean())


def spearman(uncertainty: ArrayLike, dice: ArrayLike) -> float:
    """Spearman rank correlation of per-case uncertainty and Dice (``scipy.stats.spearmanr``,
    average ranks for ties). A useful uncertainty is negatively correlated with Dice (−1 best);
    NaN when either is constant."""
    u, d = _pair(uncertainty, dice, "uncertainty", "dice")
    return float(stats.spearmanr(u, d).statistic)


def auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """AUROC of OOD detection: ``P(score_out > score_in)`` for a random OOD and a random
    in-distribution case, ties counting 1/2 (the Mann-Whitney ``U / (n·m)``).

    Args:
        scores_in: ``(n,)`` scores of in-distribution cases (higher = more OOD).
        scores_out: ``(m,)`` scores of OOD cases.

    Returns:
        Value in ``[0, 1]``: 1 separates perfectly, 0.5 is chance.
    """
    a = to_numpy(scores_in, "scores_in").astype(np.float64).ravel()
    b = to_numpy(scores_out, "scores_out").astype(np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("`scores_in` and `scores_out` must both be non-empty.")
    ranks = stats.rankdata(np.concatenate([a, b]))  # average ranks for ties
    u_out = ranks[a.size :].sum() - b.size * (b.size + 1) / 2
    return float(u_out / (a.size * b.size))
