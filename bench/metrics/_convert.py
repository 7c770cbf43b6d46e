"""One converter and the input checks shared by every metric.

All metrics accept ``numpy.ndarray`` or ``torch.Tensor`` inputs. Array-based metrics call
:func:`to_numpy`; tensor-based ones keep torch tensors on their device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Converts a tensor or array to a numpy array without copying when possible.

    Args:
        x: ``numpy.ndarray`` or ``torch.Tensor`` (any device, any shape).
        name: argument name used in error messages.

    Returns:
        The data as ``numpy.ndarray`` (same shape).

    Raises:
        ValueError: if ``x`` is neither an array nor a tensor.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # numpy has no bfloat16
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple, bool, int, float, np.generic)):
        return np.asarray(x)
    raise ValueError(f"`{name}` must be a numpy array or torch tensor, got {type(x).__name__}.")


def as_binary(x: ArrayLike, name: str) -> np.ndarray:
    """Returns ``x`` as a boolean numpy array; it must hold only 0/1 (or bool) values.

    Args:
        x: mask of any shape, bool or numeric with values in {0, 1}.
        name: argument name used in error messages.

    Returns:
        ``bool`` array of the same shape.

    Raises:
        ValueError: if ``x`` holds values other than 0 and 1 (NaN included).
    """
    a = to_numpy(x, name)
    if a.dtype == np.bool_:
        return a
    if a.dtype.kind not in "biuf":
        raise ValueError(f"`{name}` must be a numeric or bool mask, got dtype {a.dtype}.")
    if a.size and not bool(((a == 0) | (a == 1)).all()):
        raise ValueError(f"`{name}` must be a binary mask with values in {{0, 1}}; got other values.")
    return a != 0


def check_same_shape(a: ArrayLike, b: ArrayLike, name_a: str, name_b: str) -> None:
    """Raises ``ValueError`` unless ``a`` and ``b`` have the same shape."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}."
        )


def check_spatial(a: np.ndarray, name: str) -> None:
    """Raises ``ValueError`` unless ``a`` is a 2D or 3D image with at least one voxel."""
    if a.ndim not in (2, 3):
        raise ValueError(f"`{name}` must be a 2D or 3D image, got shape {tuple(a.shape)}.")
    if a.size == 0:
        raise ValueError(f"`{name}` must not be empty, got shape {tuple(a.shape)}.")


def _is_float(x: ArrayLike) -> bool:
    return x.is_floating_point() if isinstance(x, torch.Tensor) else x.dtype.kind == "f"


def _all_finite(x: ArrayLike) -> bool:
    return bool(torch.isfinite(x).all()) if isinstance(x, torch.Tensor) else bool(np.isfinite(x).all())


def check_probabilities(p: ArrayLike, name: str) -> None:
    """Raises ``ValueError`` unless ``p`` is a floating array of finite values in [0, 1]."""
    if not _is_float(p):
        raise ValueError(f"`{name}` must hold floating-point probabilities, got dtype {p.dtype}.")
    if p.shape.numel() == 0 if isinstance(p, torch.Tensor) else p.size == 0:
        return
    lo, hi = float(p.min()), float(p.max())  # NaN propagates through min/max
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"`{name}` contains NaN or inf values.")
    if lo < 0 or hi > 1:
        raise ValueError(f"`{name}` must be probabilities in [0, 1], got range [{lo}, {hi}].")


def check_labels(t: ArrayLike, num_classes: int, name: str) -> None:
    """Raises ``ValueError`` unless ``t`` holds integer class labels in ``[0, num_classes)``."""
    if not isinstance(t, torch.Tensor) and t.dtype.kind not in "biuf":
        raise ValueError(f"`{name}` must hold integer class labels, got dtype {t.dtype}.")
    if _is_float(t) and not (_all_finite(t) and bool((t == t.round()).all())):
        raise ValueError(f"`{name}` must hold integer class labels, got non-integer values.")
    if t.shape.numel() == 0 if isinstance(t, torch.Tensor) else t.size == 0:
        return
    lo, hi = t.min().item(), t.max().item()
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"`{name}` labels must be in [0, {num_classes}), got range [{lo}, {hi}].")


def spacing_tuple(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    """Normalises ``spacing`` to one positive finite float per axis (``None`` means 1.0).

    Raises:
        ValueError: on a wrong length or a non-positive / non-finite value.
    """
    if spacing is None:
        return (1.0,) * ndim
    s = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.ndim != 1 or s.size != ndim:
        raise ValueError(f"`spacing` must have one value per spatial axis ({ndim}), got {spacing!r}.")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"`spacing` values must be positive and finite, got {spacing!r}.")
    return tuple(float(v) for v in s)
