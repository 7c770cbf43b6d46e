"""Calibration binning identical to torchmetrics, with an optional numba kernel.

Bin boundaries are ``torch.linspace(0, 1, n_bins + 1)`` in the confidence dtype and the bin
of ``c`` is ``torch.bucketize(c, boundaries, right=True) - 1``: bin ``i`` is
``[b_i, b_{i+1})`` and ``c == 1.0`` gets the extra bin ``n_bins``. Both backends add, per
bin, the count, Σ confidence and Σ accuracy in float64. The numba kernel (used when numba
is installed) does this in one pass; the numpy fallback needs ~8 passes per chunk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

try:  # optional accelerator; results are identical without it
    from numba import njit
except ImportError:  # pragma: no cover - exercised where numba is absent
    njit = None

_CHUNK = 1 << 18  # cache-sized chunks for the numpy passes
# Threads for the numba kernel over chunks (2 on a 2-core machine); results do not depend on it.
THREADS = max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def bin_edges(n_bins: int, dtype: np.dtype) -> np.ndarray:
    """torchmetrics' bin boundaries ``torch.linspace(0, 1, n_bins + 1)`` in ``dtype``."""
    return torch.linspace(0, 1, n_bins + 1, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype).numpy()


def bin_index(conf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``torch.bucketize(conf, edges, right=True) - 1`` in numpy.

    ``floor(conf * n_bins)`` is exact except within rounding distance of an interior edge;
    those few values are re-binned with ``searchsorted`` against torch's own edges.
    """
    n_bins = len(edges) - 1
    frac, whole = np.modf(conf * conf.dtype.type(n_bins))
    idx = whole.astype(np.intp)
    near = np.flatnonzero(((frac < 1e-3) & (idx > 0)) | (frac > 1 - 1e-3))
    idx[near] = np.searchsorted(edges, conf[near], side="right") - 1
    return idx


def _accumulate_numpy(conf: np.ndarray, acc: np.ndarray, edges: np.ndarray, out: np.ndarray) -> None:
    idx = bin_index(conf, edges)
    size = len(edges)
    out[0] += np.bincount(idx, minlength=size)
    out[1] += np.bincount(idx, weights=conf, minlength=size)
    out[2] += np.bincount(idx, weights=acc, minlength=size)


def _accumulate_loop(conf: np.ndarray, acc: np.ndarray, edges: np.ndarray, out: np.ndarray) -> None:
    n_bins = edges.shape[0] - 1
    for i in range(conf.shape[0]):
        c = conf[i]
        k = min(int(c * n_bins), n_bins)
        while k > 0 and c < edges[k]:
            k -= 1
        while k < n_bins and c >= edges[k + 1]:
            k += 1
        out[0, k] += 1.0
        out[1, k] += c
        out[2, k] += acc[i]


_accumulate_numba = njit(cache=True, nogil=True)(_accumulate_loop) if njit is not None else None
USE_NUMBA = _accumulate_numba is not None


def _chunk_stats(conf: np.ndarray, acc: np.ndarray, edges: np.ndarray, fast: bool) -> np.ndarray:
    part = np.zeros((3, len(edges)))
    if fast:
        _accumulate_numba(conf, acc.astype(np.uint8, copy=False), edges, part)
    else:
        _accumulate_numpy(conf, acc, edges, part)
    return part


def binned_stats(conf_acc_chunks: Iterable[tuple[np.ndarray, np.ndarray]], edges: np.ndarray) -> np.ndarray:
    """Sums (count, Σ confidence, Σ accuracy) per bin over an iterable of chunks.

    Each chunk is binned into its own partial sums, and the partials are added in chunk order,
    so the result is the same whether the chunks run one after another or on
    :data:`THREADS` threads (the numba kernel releases the GIL).

    Args:
        conf_acc_chunks: iterable of ``(conf (N,) float, acc (N,) bool/0-1)`` pairs.
        edges: ``(n_bins + 1,)`` boundaries from :func:`bin_edges`.

    Returns:
        ``(3, n_bins + 1)`` float64 array.
    """
    out = np.zeros((3, len(edges)))
    fast = USE_NUMBA and edges.dtype in (np.float32, np.float64)
    if fast and THREADS > 1:
        with ThreadPoolExecutor(THREADS) as pool:
            parts = pool.map(lambda ca: _chunk_stats(ca[0], ca[1], edges, fast), conf_acc_chunks)
            for part in parts:
                out += part
        return out
    for conf, acc in conf_acc_chunks:
        out += _chunk_stats(conf, acc, edges, fast)
    return out


def chunks(p: np.ndarray, t: np.ndarray, multiclass: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields ``(confidence, accuracy)`` per chunk: binary (p, t) or top-label (max, argmax == t)."""
    for start in range(0, t.size, _CHUNK):
        part = slice(start, start + _CHUNK)
        if multiclass:
            yield p[:, part].max(axis=0), p[:, part].argmax(axis=0) == t[part]
        else:
            yield p[part], t[part]
