"""Test-time options of the test loop: mirror test-time augmentation and post-processing.

Both are settings of ``eval`` (``eval.tta``, ``eval.postprocess``), part of a run's identity, and
applied by :meth:`models.SegmentationModule.test_step`, so the records, ``segbench predict`` and
the leaderboard see the same prediction (``docs/evaluate.md``).

- ``tta: flip`` (nnU-Net's mirroring): the case is predicted once per combination of flipped
  spatial axes (2D: 4 including the identity, 3D: 8), each prediction's softmax probabilities are
  flipped back and the probabilities are averaged.
- ``postprocess``: ``largest_component`` keeps, per foreground class, the largest connected
  component of that class; ``min_size:N`` removes, per foreground class, the components smaller
  than ``N`` voxels. Removed voxels become background (0). Connectivity is full: 8 neighbours in
  2D, 26 in 3D (``cc3d``). Ties of the largest size keep the component ``cc3d`` numbers first.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import cc3d
import numpy as np
import torch

TTA_CHOICES: tuple[str, ...] = ("none", "flip")


def parse_postprocess(spec: str) -> tuple[str, int]:
    """``"none"`` / ``"largest_component"`` / ``"min_size:N"`` -> ``(kind, N)`` (N = 0 unless min_size).

    Raises:
        ValueError: any other value, or ``N`` not an integer >= 1.
    """
    if spec in ("none", "largest_component"):
        return spec, 0
    if isinstance(spec, str) and spec.startswith("min_size:"):
        text = spec.split(":", 1)[1].strip()
        if text.isdigit() and int(text) >= 1:
            return "min_size", int(text)
    raise ValueError(f"{spec!r} is not one of none, largest_component, min_size:N (N >= 1)")


def flip_combinations(spatial_dims: int) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes of a ``(B, C, *spatial)`` tensor, the empty one first."""
    axes = range(2, 2 + spatial_dims)
    return [c for r in range(spatial_dims + 1) for c in itertools.combinations(axes, r)]


def tta_probabilities(
    predict_logits: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tta: str = "none"
) -> torch.Tensor:
    """Softmax probabilities ``(B, C, *spatial)`` float32 of ``image (B, in_channels, *spatial)``.

    ``tta="flip"``: the mean over :func:`flip_combinations` of ``flip(softmax(f(flip(x))))``.
    """
    if tta not in TTA_CHOICES:
        raise ValueError(f"tta {tta!r} is not one of {', '.join(TTA_CHOICES)}")
    if tta == "none":
        return torch.softmax(predict_logits(image).float(), dim=1)
    combos = flip_combinations(image.ndim - 2)
    total: torch.Tensor | None = None
    for axes in combos:
        x = torch.flip(image, axes) if axes else image
        prob = torch.softmax(predict_logits(x).float(), dim=1)
        prob = torch.flip(prob, axes) if axes else prob
        total = prob if total is None else total + prob
    assert total is not None
    return total / len(combos)


def postprocess(pred: np.ndarray, num_classes: int, spec: str = "none") -> np.ndarray:
    """The label map ``pred (*spatial)`` after ``spec`` (:func:`parse_postprocess`), per foreground
    class; a new array (``pred`` is not changed)."""
    kind, min_size = parse_postprocess(spec)
    out = np.array(pred, copy=True)
    if kind == "none":
        return out
    connectivity = 8 if out.ndim == 2 else 26
    for c in range(1, num_classes):
        mask = pred == c
        if not mask.any():
            continue
        components = cc3d.connected_components(mask.astype(np.uint8), connectivity=connectivity)
        sizes = np.bincount(components.ravel())
        sizes[0] = 0  # background of the mask
        if kind == "largest_component":
            keep = np.zeros_like(sizes, dtype=bool)
            keep[int(sizes.argmax())] = True
        else:
            keep = sizes >= min_size
        keep[0] = False
        out[mask & ~keep[components]] = 0
    return out
