"""Prediction files: ``<results>/predictions/<run_id>/<case_id>.npz``, one per saved test case.

Written by the runner (``eval.save_predictions``), ``segbench evaluate --save-predictions`` and
``segbench ensemble``, always through :func:`write_prediction` (atomic, like a record), and
listed in the record's ``predictions`` as :func:`prediction_ref` paths relative to the results
folder. Arrays (docs/records.md):

- ``pred`` uint8 ``(*spatial)``: the predicted labels (argmax of ``prob`` when not given);
- ``label`` uint8 ``(*spatial)``: the ground truth;
- ``spacing`` float64 ``(spatial_dims,)``: voxel size (ones when unknown);
- ``prob`` float16 ``(C, *spatial)``: class probabilities, when they are kept;
- ``image`` float16 ``(C, *spatial)``: the whole input image, every channel (an RGB fundus
  image keeps its colour), when known; files written before this held ``(*spatial)``, the first
  channel only, and a caller may still pass one channel that way (the leaderboard's panels tell the
  two apart by comparing ``image.ndim`` with ``label.ndim``);
- ``fov`` bool ``(*spatial)``: the field of view, when the case has one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bench.records.store import write_atomic

PREDICTIONS = "predictions"
"""The folder under a results folder that holds every run's prediction files."""


def prediction_ref(run_id: str, case_id: str) -> str:
    """``predictions/<run_id>/<case_id>.npz``: how a record lists a case's file (relative to results)."""
    return f"{PREDICTIONS}/{run_id}/{case_id}.npz"


def prediction_arrays(
    label: np.ndarray,
    *,
    pred: np.ndarray | None = None,
    prob: np.ndarray | None = None,
    image: np.ndarray | None = None,
    fov: np.ndarray | None = None,
    spacing: Sequence[float] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of one prediction file, in their stored dtypes (see the module docstring).

    Args:
        label: ground truth ``(*spatial)`` integer labels.
        pred: predicted labels ``(*spatial)``; None: the argmax of ``prob``.
        prob: class probabilities ``(C, *spatial)`` in [0, 1], stored when given.
        image: the input image, ``(C, *spatial)`` with every channel (what the runner passes) or
            ``(*spatial)`` for a single channel; stored as float16 when given.
        fov, spacing: stored when given (``spacing`` defaults to ones).

    Raises:
        ValueError: without ``pred`` and ``prob``.
    """
    if pred is None:
        if prob is None:
            raise ValueError("a prediction file needs pred or prob")
        pred = np.argmax(prob, axis=0)
    arrays: dict[str, np.ndarray] = {
        "pred": np.asarray(pred).astype(np.uint8),
        "label": np.asarray(label).astype(np.uint8),
        "spacing": np.asarray(spacing if spacing is not None else [1.0] * np.ndim(label), dtype=np.float64),
    }
    if prob is not None:
        arrays["prob"] = np.asarray(prob).astype(np.float16)
    if image is not None:
        arrays["image"] = np.asarray(image).astype(np.float16)
    if fov is not None:
        arrays["fov"] = np.asarray(fov).astype(bool)
    return arrays


def write_prediction(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` (:func:`prediction_arrays`) as a compressed ``.npz`` at ``path``, atomically."""
    write_atomic(Path(path), lambda fh: np.savez_compressed(fh, **arrays))


def read_prediction(path: Path) -> dict[str, np.ndarray]:
    """Every array of a prediction file (no pickled objects).

    Raises:
        OSError, ValueError, zipfile.BadZipFile: the file is missing or not a readable ``.npz``.
    """
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def has_probabilities(path: Path) -> bool:
    """Whether the prediction file at ``path`` holds ``prob`` (reads only its index).

    Raises:
        OSError, ValueError, zipfile.BadZipFile: the file is missing or not a readable ``.npz``.
    """
    with np.load(path, allow_pickle=False) as z:
        return "prob" in z.files
