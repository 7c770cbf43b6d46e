"""Reading prediction and ground-truth files for ``segbench evaluate`` (docs/evaluate.md).

Formats (one reader per extension, :data:`READERS`):

- PNG / GIF (PIL): mode ``1`` reads as {0, 1}, ``L`` / ``I`` / ``I;16`` / ``F`` as stored, ``P``
  (palette) as its palette indices (the PASCAL VOC convention for class maps), a grey image
  stored as RGB(A) as one channel; a coloured RGB image is an error.
- TIFF (tifffile, PIL for what tifffile cannot decode): 2D images or stacks ``(pages, H, W)``.
- NIfTI ``.nii`` / ``.nii.gz`` (nibabel): the array as stored (nibabel's axis order, no
  reorientation) and the spacing from the header zooms; a 4D file is ``(X, Y, Z, C)``
  probabilities and becomes ``(C, X, Y, Z)``.
- NumPy ``.npy`` and ``.npz`` (the single array, else key ``prob``, ``pred``, nnU-Net's
  ``probabilities`` or ``seg``, in that order; a ``spacing`` key is read as the spacing).
  nnU-Net's ``probabilities`` are stored ``(C, z, y, x)`` (SimpleITK order): the spatial axes
  are reversed to nibabel's ``(x, y, z)``; a 2D case's singleton ``z`` is dropped.

Interpretation (:func:`as_prediction`): a float array with every value in ``[0, 1]`` is a
probability map, ``(C, *spatial)`` with one channel per class (channels must sum to 1) or
``(*spatial)`` foreground only (then background = ``1 - p``); an integer, bool or whole-number
float array is a label map. Label maps that hold only 0 and 255 (binary masks saved as 8-bit
images) map 255 to 1; ``label_map`` (``--label-map 255:1,128:2``) replaces that rule.
Every problem raises :class:`PredictionFileError`, whose message names the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_BINARY_WHITE = 255
_SUM_TOLERANCE = 1e-2  # float16 probabilities (nnU-Net, segbench's npz) sum to 1 within ~1e-3
_NPZ_KEYS = ("prob", "pred", "probabilities", "seg")
PRED_KINDS = ("auto", "label", "prob")


class PredictionFileError(ValueError):
    """A prediction or ground-truth file that cannot be read or used; the message names the file."""


@dataclass
class ArrayFile:
    """What a reader returns.

    Attributes:
        array: the data, ``(*spatial)`` or ``(C, *spatial)``.
        spacing: voxel size per spatial axis from the file (NIfTI header, npz ``spacing``), or None.
    """

    array: np.ndarray
    spacing: tuple[float, ...] | None = None


# ---- file names --------------------------------------------------------------------------

EXTENSIONS = (".nii.gz", ".nii", ".png", ".gif", ".tif", ".tiff", ".npy", ".npz")


def split_extension(name: str) -> tuple[str, str] | None:
    """``("case_001", ".nii.gz")`` for ``case_001.nii.gz``; None for an unsupported extension."""
    low = name.lower()
    for ext in EXTENSIONS:
        if low.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return None


def case_id_of(path: str | os.PathLike[str], strip_suffixes: Sequence[str] = ()) -> str | None:
    """The case id of a file: its name minus the extension (``.nii.gz`` is one) and minus the
    first of ``strip_suffixes`` that the stem ends with; None for an unsupported extension."""
    parts = split_extension(Path(path).name)
    if parts is None:
        return None
    stem = parts[0]
    for suffix in strip_suffixes:
        if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def sha256_of(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- readers -----------------------------------------------------------------------------


def _read_pil(path: Path) -> ArrayFile:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.asarray(img)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise PredictionFileError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    if mode == "1":
        arr = arr.astype(np.uint8)
    elif arr.ndim == 3:  # RGB(A) / LA: accept a grey image stored with colour channels
        grey = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        if not (grey == grey[..., :1]).all():
            raise PredictionFileError(
                f"{path}: colour image (mode {mode}); save label maps as grey or palette images"
            )
        arr = np.ascontiguousarray(grey[..., 0])
    return ArrayFile(arr)


def _read_tiff(path: Path) -> ArrayFile:
    import tifffile

    try:
        return ArrayFile(np.asarray(tifffile.imread(path)))
    except Exception as tiff_error:  # noqa: BLE001 - e.g. LZW without imagecodecs: PIL decodes it
        try:
            return _read_pil(path)
        except PredictionFileError:
            raise PredictionFileError(
                f"{path}: cannot read TIFF ({type(tiff_error).__name__}: {tiff_error})"
            ) from tiff_error


def _read_nifti(path: Path) -> ArrayFile:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj)
    except Exception as e:  # noqa: BLE001 - nibabel raises many types for a broken file
        raise PredictionFileError(f"{path}: cannot read NIfTI ({type(e).__name__}: {e})") from e
    zooms = tuple(float(z) for z in img.header.get_zooms())
    if arr.ndim == 4:  # (X, Y, Z, C) probabilities -> (C, X, Y, Z)
        return ArrayFile(np.moveaxis(arr, -1, 0), zooms[:3])
    return ArrayFile(arr, zooms[: arr.ndim])


def _read_npy(path: Path) -> ArrayFile:
    try:
        return ArrayFile(np.load(path, allow_pickle=False))
    except (OSError, ValueError, EOFError) as e:
        raise PredictionFileError(f"{path}: cannot read .npy ({type(e).__name__}: {e})") from e


def _read_npz(path: Path) -> ArrayFile:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            spacing = tuple(float(s) for s in z["spacing"]) if "spacing" in keys else None
            arrays = [k for k in keys if k != "spacing"]
            key = arrays[0] if len(arrays) == 1 else next((k for k in _NPZ_KEYS if k in keys), None)
            if key is None:
                raise PredictionFileError(
                    f"{path}: .npz holds {keys}; expected one array or a key of {list(_NPZ_KEYS)}"
                )
            arr = z[key]
    except PredictionFileError:
        raise
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, zipfile.BadZipFile ...
        raise PredictionFileError(f"{path}: cannot read .npz ({type(e).__name__}: {e})") from e
    if key == "probabilities" and arr.ndim == 4:  # nnU-Net: (C, z, y, x) in SimpleITK order
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 3, 2, 1)  # 2D: (C, 1, y, x)
    return ArrayFile(arr, spacing)


READERS: dict[str, Callable[[Path], ArrayFile]] = {
    ".png": _read_pil,
    ".gif": _read_pil,
    ".tif": _read_tiff,
    ".tiff": _read_tiff,
    ".nii": _read_nifti,
    ".nii.gz": _read_nifti,
    ".npy": _read_npy,
    ".npz": _read_npz,
}


def read_array(path: str | os.PathLike[str]) -> ArrayFile:
    """Read any supported file (see :data:`READERS`).

    Raises:
        PredictionFileError: unsupported extension or unreadable file (names the file).
    """
    path = Path(path)
    parts = split_extension(path.name)
    if parts is None:
        raise PredictionFileError(f"{path}: unsupported file type; supported: {', '.join(EXTENSIONS)}")
    if not path.is_file():
        raise PredictionFileError(f"{path}: no such file")
    return READERS[parts[1]](path)


# ---- interpretation ----------------------------------------------------------------------


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
        PredictionFileError: non-numeric data or non-whole float values (names the file).
    """
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not _whole_numbers(array):
            raise PredictionFileError(f"{path}: label map holds values that are not whole numbers")
    elif array.dtype.kind not in "iu":
        raise PredictionFileError(f"{path}: dtype {array.dtype} is not a label map or probability map")
    return apply_label_map(array, label_map)


def check_label_values(labels: np.ndarray, num_classes: int, path: str | os.PathLike[str]) -> None:
    """Raise :class:`PredictionFileError` naming ``path`` when a label lies outside ``[0, num_classes)``."""
    values = np.unique(labels)
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise PredictionFileError(
            f"{path}: unexpected label values {bad[:10].tolist()} (expected 0..{num_classes - 1}; "
            "--label-map renumbers them)"
        )


def _is_probability(array: np.ndarray) -> bool:
    if array.dtype.kind != "f" or array.size == 0:
        return False
    lo, hi = float(np.min(array)), float(np.max(array))
    return bool(np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0)


def _shape_problem(shape: tuple[int, ...], gt_shape: tuple[int, ...], path: str | os.PathLike[str]) -> str:
    hint = ""
    if shape[-len(gt_shape) :][::-1] == gt_shape and shape[-len(gt_shape) :] != gt_shape:
        hint = " (the ground truth's axes reversed: a file written in another axis order?)"
    return f"{path}: shape {shape} does not match the ground truth's {gt_shape}{hint}"


def as_prediction(
    array: np.ndarray,
    path: str | os.PathLike[str],
    gt_shape: Sequence[int],
    *,
    num_classes: int,
    kind: str = "auto",
    label_map: Mapping[int, int] | None = None,
) -> tuple[np.ndarray, str]:
    """Turn a file's array into what ``evaluate_case`` takes, checked against the ground truth.

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
        PredictionFileError: wrong shape, channel count, value range or label values (names the file).
    """
    gt_shape = tuple(int(s) for s in gt_shape)
    if kind not in PRED_KINDS:
        raise ValueError(f"--pred-kind must be one of {PRED_KINDS}, got {kind!r}")
    is_prob = _is_probability(array) if kind == "auto" else kind == "prob"
    if kind == "auto" and not is_prob and array.dtype.kind == "f" and not _whole_numbers(array):
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        raise PredictionFileError(
            f"{path}: float values in [{lo:.4g}, {hi:.4g}] are neither probabilities (in [0, 1]) "
            "nor whole-number labels"
        )
    if not is_prob:
        if tuple(array.shape) != gt_shape:
            raise PredictionFileError(_shape_problem(tuple(array.shape), gt_shape, path))
        labels = as_labels(array, path, label_map)
        check_label_values(labels, num_classes, path)
        return labels, "label"
    if not _is_probability(array):
        raise PredictionFileError(f"{path}: probabilities must be floats in [0, 1] (dtype {array.dtype})")
    prob = array.astype(np.float32, copy=False)
    if tuple(prob.shape) == gt_shape:  # foreground only
        if num_classes != 2:
            raise PredictionFileError(
                f"{path}: a single probability map is foreground-only, but the ground truth has "
                f"{num_classes} classes; save (C, *spatial) with one channel per class"
            )
        return np.stack([1.0 - prob, prob]), "prob"
    if prob.ndim != len(gt_shape) + 1 or tuple(prob.shape[1:]) != gt_shape:
        raise PredictionFileError(_shape_problem(tuple(prob.shape), gt_shape, path))
    if prob.shape[0] != num_classes:
        raise PredictionFileError(
            f"{path}: {prob.shape[0]} probability channels but the ground truth has {num_classes} classes"
        )
    deviation = float(np.max(np.abs(prob.sum(axis=0, dtype=np.float64) - 1.0)))
    if deviation > _SUM_TOLERANCE:
        raise PredictionFileError(
            f"{path}: probability channels must sum to 1 per voxel (largest deviation {deviation:.3g})"
        )
    return prob, "prob"


def as_ground_truth(array: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """A ground-truth file's array as int64 labels ``(*spatial)`` (2D or 3D; {0, 255} -> {0, 1}).

    Raises:
        PredictionFileError: not 2D/3D, or not a label map (names the file).
    """
    if array.ndim not in (2, 3):
        raise PredictionFileError(
            f"{path}: ground truth must be a 2D or 3D label map, got shape {array.shape}"
        )
    labels = as_labels(array, path)
    if labels.size and labels.min() < 0:
        raise PredictionFileError(f"{path}: ground truth holds negative labels")
    return labels


def spacings_match(a: Sequence[float], b: Sequence[float], rtol: float = 1e-4) -> bool:
    """Whether two voxel spacings agree (relative tolerance ``rtol``; NIfTI zooms are float32)."""
    return len(a) == len(b) and bool(np.allclose(a, b, rtol=rtol, atol=0.0))
