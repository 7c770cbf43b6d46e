"""The one Wilcoxon signed-rank test of segbench (the leaderboard's paired tests and
:mod:`bench.leaderboard.claims`): exact enumeration for small n, scipy's exact null and its
tie-corrected normal approximation above, bit-identical to ``scipy.stats.wilcoxon`` (tested).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import special as _special
from scipy import stats as _st

EXACT_MAX = 16
"""Up to this many non-zero differences the signed-rank null distribution is enumerated exactly."""


@functools.lru_cache(maxsize=EXACT_MAX + 1)
def _sign_patterns(n: int) -> np.ndarray:
    """``(2^n, n)`` every sign pattern of ``n`` differences as 0/1 (1: positive)."""
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.float64)


def signed_rank_p(d: np.ndarray, *, scipy_auto: bool = False) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of the paired differences ``d`` ``(n,)``.

    Zero differences are dropped (``zero_method="wilcox"``), ties get average ranks. Up to
    :data:`EXACT_MAX` non-zero differences the null (every sign pattern equally likely) is enumerated
    exactly, ties included, which is what ``scipy.stats.wilcoxon`` computes with ``method="exact"``
    (no ties) or its permutation method (ties), vectorised. Above, the p-value is scipy's exact test
    (no ties, up to 50) or its normal approximation with tie correction, computed here as scipy
    computes them (bit-identical, tested) without ``scipy.stats.wilcoxon``'s per-call cost of about
    half a millisecond, which dominated rendering a leaderboard of a few hundred runs.

    With ``scipy_auto`` the method is chosen as ``scipy.stats.wilcoxon(d)`` (``method="auto"``)
    chooses it, zeros counted in ``n``: the exact null when there are neither ties nor zeros (up to
    50), else the enumeration up to 13 differences and the normal approximation above. That is the
    p-value :mod:`bench.leaderboard.claims` has always reported (README quotes it).
    """
    d = np.asarray(d, dtype=np.float64)
    n_all = d.size
    d = d[d != 0]
    n = d.size
    if n == 0:
        return 1.0
    ranks = _st.rankdata(np.abs(d))
    t = float(ranks[d > 0].sum())  # T+: a sum of integers and halves, exact in any order
    if scipy_auto:
        tie_sizes = np.unique(np.abs(d), return_counts=True)[1]
        if tie_sizes.size == n == n_all and n <= 50:
            return _exact_signed_rank_p(t, n)
        if n_all <= 13:
            return _enumerated_signed_rank_p(t, ranks)
        return _asymptotic_signed_rank_p(t, n, tie_sizes)
    if n > EXACT_MAX:
        tie_sizes = np.unique(np.abs(d), return_counts=True)[1]
        if tie_sizes.size == n and n <= 50:
            return _exact_signed_rank_p(t, n)
        return _asymptotic_signed_rank_p(t, n, tie_sizes)
    return _enumerated_signed_rank_p(t, ranks)


def _enumerated_signed_rank_p(t: float, ranks: np.ndarray) -> float:
    """Two-sided p of ``T+ = t`` over every sign pattern of the ``ranks`` (ties keep their average
    ranks): ``2 min(P(T+ >= t), P(T+ <= t))``, clipped to 1."""
    null = _sign_patterns(ranks.size) @ ranks
    eps = 1e-9 * max(1.0, ranks.sum())
    p = 2.0 * min(np.mean(null >= t - eps), np.mean(null <= t + eps))
    return float(min(1.0, p))


@functools.lru_cache(maxsize=64)
def _signed_rank_null(n: int) -> np.ndarray:
    """``(n (n + 1) / 2 + 1,)`` probabilities of each rank sum ``T+`` of ``n`` untied differences
    under the null: the distribution of the sum of a random subset of ``1..n`` (each in with
    probability 1/2). Built one rank at a time; every value is a multiple of ``2^-n``, exact in
    float64 for ``n <= 50``."""
    pmf = np.ones(1)
    for k in range(1, n + 1):
        grown = np.zeros(k * (k + 1) // 2 + 1)
        grown[: pmf.size] = 0.5 * pmf  # rank k out of the positive set
        grown[k:] += 0.5 * pmf  # rank k in
        pmf = grown
    pmf.flags.writeable = False
    return pmf


def _exact_signed_rank_p(r_plus: float, n: int) -> float:
    """Two-sided exact p of ``T+ = r_plus`` (integral, no ties), as ``scipy.stats.wilcoxon(method=
    "exact")`` computes it: ``2 min(P(T+ >= t), P(T+ <= t))``, each tail summed on the side of the
    mean that holds it (the other as one minus the rest), clipped to 1."""
    pmf, t, mean = _signed_rank_null(n), int(r_plus), n * (n + 1) / 4
    upper = pmf[t:].sum() if t <= mean else 1.0 - pmf[:t].sum()
    lower = pmf[: t + 1].sum() if t <= mean else 1.0 - pmf[t + 1 :].sum()
    return float(min(1.0, 2.0 * min(upper, lower)))


def _asymptotic_signed_rank_p(r_plus: float, n: int, tie_sizes: np.ndarray) -> float:
    """Two-sided normal-approximation p of ``T+ = r_plus`` with the tie correction and without a
    continuity correction, as ``scipy.stats.wilcoxon(method="asymptotic")`` computes it."""
    var = (n * (n + 1.0) * (2.0 * n + 1.0) - float((tie_sizes**3 - tie_sizes).sum()) / 2) / 24
    z = (r_plus - n * (n + 1.0) * 0.25) / math.sqrt(var)
    return float(2.0 * _special.ndtr(-abs(z)))


def signed_rank_p_inf(d: np.ndarray) -> float:
    """:func:`signed_rank_p` of differences that may be infinite (an HD95 of an empty prediction):
    an infinite difference keeps its sign and ranks above every finite one."""
    d = np.asarray(d, dtype=np.float64)
    finite = d[np.isfinite(d)]
    big = 2.0 * (np.abs(finite).max() if finite.size else 1.0) + 1.0
    return signed_rank_p(np.where(np.isinf(d), np.sign(d) * big, d))


def smallest_p(n: int, m: int = 1) -> float:
    """The smallest two-sided exact signed-rank p that ``n`` non-zero pairs can reach, Holm-adjusted
    for ``m`` tests (its first step multiplies by ``m``): ``min(1, m · 2 / 2^n)``; 1 for ``n = 0``."""
    return min(1.0, max(m, 1) * 2.0 / 2.0**n) if n > 0 else 1.0
