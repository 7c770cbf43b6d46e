"""What a prediction or ground-truth file's array means, for ``segbench evaluate`` (docs/evaluate.md).

Files are read by :func:`datamodules.readers.read_array` (values as stored); this module decides
what the values are. :func:`as_prediction`: a float array with every value in ``[0, 1]`` is a
probability map, ``(C, *spatial)`` with one channel per class (channels must sum to 1) or
``(*spatial)`` foreground only (then background = ``1 - p``); an integer, bool or whole-number
float array is a label map. Label maps that hold only 0 and 255 (binary masks saved as 8-bit
images) map 255 to 1; ``label_map`` (``--label-map 255:1,128:2``) replaces that rule.
Every problem raises :class:`~datamodules.readers.CaseLoadError`, whose message names the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from datamodules.readers import CaseLoadError, check_same_shape

_BINARY_WHITE = 255
_SUM_TOLERANCE = 1e-2  # float16 probabilities (nnU-Net, segbench's npz) sum to 1 within ~1e-3
_GT = "the ground truth's"
PRED_KINDS = ("auto", "label", "prob")


def parse_label_map(text: str | None) -> dict[int, int] | None:
    """``"255:1,128:2"`` -> ``{255: 1, 128: 2}``; None/empty -> None.

    Raises:
        ValueError: a malformed entry (names the option).
    """
    if not text:
        return None
    out: dict[int, int] = {}
    for item in text.split(","):
        try:
            src, dst = item.split(":")
            out[int(src)] = int(dst)
        except ValueError:
            raise ValueError(
                f"--label-map: {item!r} is not FROM:TO with whole numbers (e.g. 255:1,128:2)"
            ) from None
    return out


def apply_label_map(labels: np.ndarray, label_map: Mapping[int, int] | None) -> np.ndarray:
    """Integer labels ``(*spatial)`` -> int64 with ``label_map`` applied (values it does not name stay);
    without a map, a mask holding only {0, 255} has 255 mapped to 1."""
    labels = labels.astype(np.int64, copy=False)
    values = np.unique(labels)
    if label_map is None:
        if values.size and set(values.tolist()) <= {0, _BINARY_WHITE} and values[-1] == _BINARY_WHITE:
            return (labels == _BINARY_WHITE).astype(np.int64)
        return labels
    out = labels.copy()
    for src, dst in label_map.items():
        out[labels == src] = dst
    return out


def _whole_numbers(x: np.ndarray) -> bool:
    return bool(np.isfinite(x).all() and (x == np.round(x)).all())


def as_labels(
    array: np.ndarray, path: str | os.PathLike[str], label_map: Mapping[int, int] | None = None
) -> np.ndarray:
    """An integer / bool / whole-number float array as an int64 label map (see :func:`apply_label_map`).

    Raises:
        CaseLoadError: non-numeric data or non-whole float values (names the file).
    """
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not _whole_numbers(array):
            raise CaseLoadError(f"{path}: label map holds values that are not whole numbers")
    elif array.dtype.kind not in "iu":
        raise CaseLoadError(f"{path}: dtype {array.dtype} is not a label map or probability map")
    return apply_label_map(array, label_map)


def check_label_values(labels: np.ndarray, num_classes: int, path: str | os.PathLike[str]) -> None:
    """Raise :class:`CaseLoadError` naming ``path`` when a label lies outside ``[0, num_classes)``."""
    values = np.unique(labels)
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise CaseLoadError(
            f"{path}: unexpected label values {bad[:10].tolist()} (expected 0..{num_classes - 1}; "
            "--label-map renumbers them)"
        )


def _is_probability(array: np.ndarray) -> bool:
    if array.dtype.kind != "f" or array.size == 0:
        return False
    lo, hi = float(np.min(array)), float(np.max(array))
    return bool(np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0)


def as_prediction(
    array: np.ndarray,
    path: str | os.PathLike[str],
    gt_shape: Sequence[int],
    *,
    num_classes: int,
    kind: str = "auto",
    label_map: Mapping[int, int] | None = None,
) -> tuple[np.ndarray, str]:
    """Turn a file's array into what ``case_metrics`` takes, checked against the ground truth.

    Args:
        array: ``(*spatial)`` labels or foreground probabilities, or ``(C, *spatial)`` probabilities.
        path: the file (for messages).
        gt_shape: the ground truth's ``(*spatial)``.
        num_classes: C of the ground truth (labels must lie in ``[0, C)``, probabilities have C channels).
        kind: ``auto`` (float in [0, 1] = probabilities), ``label`` or ``prob``.
        label_map: renumbering of label values (``{from: to}``).

    Returns:
        ``(prediction, kind)``: int64 labels ``(*spatial)`` and ``"label"``, or float32
        probabilities ``(C, *spatial)`` and ``"prob"``.

    Raises:
        CaseLoadError: wrong shape, channel count, value range or label values (names the file).
    """
    gt_shape = tuple(int(s) for s in gt_shape)
    if kind not in PRED_KINDS:
        raise ValueError(f"--pred-kind must be one of {PRED_KINDS}, got {kind!r}")
    is_prob = _is_probability(array) if kind == "auto" else kind == "prob"
    if kind == "auto" and not is_prob and array.dtype.kind == "f" and not _whole_numbers(array):
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        raise CaseLoadError(
            f"{path}: float values in [{lo:.4g}, {hi:.4g}] are neither probabilities (in [0, 1]) "
            "nor whole-number labels"
        )
    if not is_prob:
        check_same_shape(gt_shape, array, path, reference=_GT)
        labels = as_labels(array, path, label_map)
        check_label_values(labels, num_classes, path)
        return labels, "label"
    if not _is_probability(array):
        raise CaseLoadError(f"{path}: probabilities must be floats in [0, 1] (dtype {array.dtype})")
    prob = array.astype(np.float32, copy=False)
    if tuple(prob.shape) == gt_shape:  # foreground only
        if num_classes != 2:
            raise CaseLoadError(
                f"{path}: a single probability map is foreground-only, but the ground truth has "
                f"{num_classes} classes; save (C, *spatial) with one channel per class"
            )
        return np.stack([1.0 - prob, prob]), "prob"
    if prob.ndim != len(gt_shape) + 1 or tuple(prob.shape[1:]) != gt_shape:
        check_same_shape(gt_shape, prob, path, reference=_GT)  # (C, *spatial) never equals gt_shape: raises
    if prob.shape[0] != num_classes:
        raise CaseLoadError(
            f"{path}: {prob.shape[0]} probability channels but the ground truth has {num_classes} classes"
        )
    deviation = float(np.max(np.abs(prob.sum(axis=0, dtype=np.float64) - 1.0)))
    if deviation > _SUM_TOLERANCE:
        raise CaseLoadError(
            f"{path}: probability channels must sum to 1 per voxel (largest deviation {deviation:.3g})"
        )
    return prob, "prob"


def as_ground_truth(array: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """A ground-truth file's array as int64 labels ``(*spatial)`` (2D or 3D; {0, 255} -> {0, 1}).

    Raises:
        CaseLoadError: not 2D/3D, or not a label map (names the file).
    """
    if array.ndim not in (2, 3):
        raise CaseLoadError(f"{path}: ground truth must be a 2D or 3D label map, got shape {array.shape}")
    labels = as_labels(array, path)
    if labels.size and labels.min() < 0:
        raise CaseLoadError(f"{path}: ground truth holds negative labels")
    return labels


def spacings_match(a: Sequence[float], b: Sequence[float], rtol: float = 1e-4) -> bool:
    """Whether two voxel spacings agree (relative tolerance ``rtol``; NIfTI zooms are float32)."""
    return len(a) == len(b) and bool(np.allclose(a, b, rtol=rtol, atol=0.0))
