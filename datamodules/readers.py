"""Readers for release formats and the shared per-case conversions: the one place segbench reads
image files (the DataModules, and ``segbench evaluate`` for predictions made elsewhere).

Every reader turns a broken or unexpected file into :class:`CaseLoadError`, a ``ValueError``
whose message names the file, so one bad case can be reported (and skipped) without hiding
which file is at fault.

- 2D images (PNG, JPEG, TIFF, GIF, PPM, also ``.gz``-compressed as in STARE) via PIL;
  multi-page TIFF stacks via tifffile; NIfTI via nibabel (with voxel spacing).
- Volumes (:func:`read_volume`): NIfTI via nibabel, ``.mha`` / ``.mhd`` / ``.nrrd`` / ``.nhdr`` via
  SimpleITK (the optional ``[sitk]`` extra; without it :class:`MissingExtraError` names the
  extra), all in nibabel's ``(x, y, z)`` axis order with spacing and a RAS affine.
- Natural 2D images with their own channel count (:func:`image_channels`,
  :func:`read_natural_image`: grey 1, colour 3), label maps of any supported format as stored
  (:func:`read_label_map`), and the image-folder mask rule (:func:`mask_label`: 0/255 is binary,
  anything else holds its labels).
- Binary masks (labels and FOV) are read as 8-bit grey (``convert("L")``), which unifies PIL
  modes ``1`` (CHASE_DB1), ``P`` (DRIVE 2nd observer), ``L`` and ``RGB`` (HRF FOV masks).
- Any supported file as stored (:func:`read_array`, one reader per extension in
  :data:`READERS`), for label and probability maps whose values must not be converted:

  - PNG / GIF (PIL): mode ``1`` reads as {0, 1}, ``L`` / ``I`` / ``I;16`` / ``F`` as stored,
    ``P`` (palette) as its palette indices (the PASCAL VOC convention for class maps), a grey
    image stored as RGB(A) as one channel; a coloured RGB image is an error.
  - TIFF (tifffile, PIL for what tifffile cannot decode): 2D images or stacks ``(pages, H, W)``.
  - NIfTI ``.nii`` / ``.nii.gz`` (nibabel): the array as stored (nibabel's axis order, no
    reorientation) and the spacing from the header zooms; a 4D file is ``(X, Y, Z, C)``
    probabilities and becomes ``(C, X, Y, Z)``.
  - NumPy ``.npy`` and ``.npz`` (the single array, else key ``prob``, ``pred``, nnU-Net's
    ``probabilities`` or ``seg``, in that order; a ``spacing`` key is read as the spacing).
    nnU-Net's ``probabilities`` are stored ``(C, z, y, x)`` (SimpleITK order): the spatial axes
    are reversed to nibabel's ``(x, y, z)``; a 2D case's singleton ``z`` is dropped.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageSequence
from scipy import ndimage

from bench.errors import UserError

_GREY_MAX = 255
_HALF_GREY = 128
_BINARY_TOLERANCE = 32
_TIFF = {".tif", ".tiff"}
_HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I", "F"}


class CaseLoadError(ValueError):
    """A case could not be read or failed a check; the message names the file."""


def _open_pil(path: Path) -> Image.Image:
    try:
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rb") as f:
                img = Image.open(io.BytesIO(f.read()))
        else:
            img = Image.open(path)
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # PIL raises all of these
        raise CaseLoadError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    return img


def read_image_2d(path: str | os.PathLike[str], mode: str = "RGB") -> np.ndarray:
    """Read a 2D image as ``(C, H, W)`` float32 (C = 3 for ``mode="RGB"``, 1 for ``"L"``).

    Values are 0..255, except 16-bit / float grey images read with ``mode="L"``, which keep theirs.

    PIL first (it decodes LZW TIFFs without extra codecs), tifffile for TIFFs PIL cannot open.
    """
    path = Path(path)
    try:
        img = _open_pil(path)
        if mode == "L" and img.mode in _HIGH_DEPTH_MODES:  # keep 16-bit / float grey values
            arr = np.asarray(img, dtype=np.float32)
        else:
            arr = np.asarray(img.convert(mode), dtype=np.float32)
    except CaseLoadError:
        if path.suffix.lower() not in _TIFF:
            raise
        arr = _read_tiff(path).astype(np.float32)
        if arr.ndim == 3:  # (H, W, C)
            arr = arr[..., :3].mean(-1) if mode == "L" else arr[..., :3]
        elif mode != "L":
            arr = np.repeat(arr[..., None], 3, axis=-1)
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)  # (H, W)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        return np.asarray(tifffile.imread(path))
    except Exception as e:  # tifffile raises many types for a broken file
        raise CaseLoadError(f"{path}: cannot read TIFF ({type(e).__name__}: {e})") from e


def read_stack(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a multi-page TIFF stack as ``(pages, H, W)`` (tifffile, PIL page by page as fallback)."""
    path = Path(path)
    try:
        arr = _read_tiff(path)
    except CaseLoadError:
        img = _open_pil(path)
        arr = np.stack([np.asarray(page.convert("L")) for page in ImageSequence.Iterator(img)])
    if arr.ndim == 2:  # (one page)
        arr = arr[None]
    if arr.ndim != 3:  # (pages, H, W)
        raise CaseLoadError(f"{path}: expected a stack of grey pages, got shape {arr.shape}")
    return arr


def read_grey(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask / grey image as ``(H, W)`` uint8 (PIL ``convert("L")``)."""
    path = Path(path)
    try:
        return np.asarray(_open_pil(path).convert("L"))
    except CaseLoadError:
        if path.suffix.lower() not in _TIFF:
            raise
        arr = _read_tiff(path)
        return (arr[..., 0] if arr.ndim == 3 else arr).astype(np.uint8)  # (H, W, C)


def binary_label(raw: np.ndarray, path: str | os.PathLike[str], *, invert: bool = False) -> np.ndarray:
    """Binary label from a grey mask: ``(H, W)`` int64 in {0, 1}.

    A mask whose values are all 0 or 1 uses 1 as foreground; otherwise every value must lie
    within ``_BINARY_TOLERANCE`` of black or white (palette GIFs such as DRIVE's 2nd observer
    convert to {3, 253}) and foreground is white.

    Raises:
        CaseLoadError: mid-grey values (names the file and the values found).
    """
    if raw.max() <= 1:
        fg = raw > 0
    else:
        ambiguous = (raw > _BINARY_TOLERANCE) & (raw < _GREY_MAX - _BINARY_TOLERANCE)
        if ambiguous.any():
            shown = np.unique(raw[ambiguous])[:10].tolist()
            raise CaseLoadError(
                f"{path}: label values {shown} are not binary (expected near 0 / 255, or 0 / 1)"
            )
        fg = raw >= _HALF_GREY
    return (~fg if invert else fg).astype(np.int64)


def read_binary_label(path: str | os.PathLike[str], *, invert: bool = False) -> np.ndarray:
    """Read a binary label mask file as ``(H, W)`` int64 in {0, 1}."""
    return binary_label(read_grey(path), path, invert=invert)


def read_fov(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a field-of-view mask as ``(H, W)`` bool, thresholded at mid-grey (VEVIO masks are not binary)."""
    return read_grey(path) >= _HALF_GREY


def integer_label(raw: np.ndarray, path: str | os.PathLike[str], num_classes: int) -> np.ndarray:
    """Multi-class label map (any numeric dtype holding whole numbers) as int64 in ``[0, num_classes)``.

    Raises:
        CaseLoadError: non-integral values or values outside ``[0, num_classes)``.
    """
    if not np.issubdtype(raw.dtype, np.integer):
        rounded = np.rint(raw)
        if not np.array_equal(rounded, raw):
            raise CaseLoadError(f"{path}: label holds non-integer values")
        raw = rounded
    label = raw.astype(np.int64)
    values = np.unique(label)
    bad = values[(values < 0) | (values >= num_classes)]
    if bad.size:
        raise CaseLoadError(
            f"{path}: label values {bad[:10].tolist()} outside the expected set 0..{num_classes - 1}"
        )
    return label


def mask_values(raw: np.ndarray) -> set[int]:
    """The labels a mask holds under :func:`mask_label`'s rule (an empty set when it breaks the rule
    in a way no class count can fix: non-integral or negative values)."""
    values = np.unique(raw)
    if set(values.tolist()) <= {0, _GREY_MAX}:
        return {int(v > 0) for v in values}
    if not np.array_equal(values, np.rint(values)) or values.min() < 0:
        return set()
    return {int(v) for v in values}


def mask_label(raw: np.ndarray, path: str | os.PathLike[str], num_classes: int) -> np.ndarray:
    """A 2D mask as labels ``(H, W)`` int64: values {0, 255} are binary (255 -> 1); any other mask
    holds its labels as stored, which must lie in ``0..num_classes-1``.

    Raises:
        CaseLoadError: other values (names the file and the values found).
    """
    values = np.unique(raw)
    if set(values.tolist()) <= {0, _GREY_MAX}:
        return (raw == _GREY_MAX).astype(np.int64)
    ok = np.array_equal(values, np.rint(values)) and values.min() >= 0 and values.max() < num_classes
    if not ok:
        shown = [int(v) if float(v).is_integer() else float(v) for v in values[:10]]
        raise CaseLoadError(
            f"{path}: mask values {shown} are not consecutive labels 0..{num_classes - 1} "
            "(a binary mask holds 0/255 or 0/1)"
        )
    return raw.astype(np.int64)


def read_nifti(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a NIfTI file: ``(array (X, Y, Z[, C]) as stored, voxel spacing (3,))``."""
    vol = _read_nifti_volume(Path(path))
    return vol.array, vol.spacing


@dataclass
class Volume:
    """What :func:`read_volume` returns.

    Attributes:
        array: ``(X, Y, Z)`` or ``(X, Y, Z, C)`` as stored, in nibabel's axis order (no reorientation).
        spacing: voxel size per spatial axis (mm).
        affine: ``(4, 4)`` voxel index -> RAS+ world (mm), from the header.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray


def _read_nifti_volume(path: Path) -> Volume:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as e:  # nibabel raises several types for a broken file
        raise CaseLoadError(f"{path}: cannot read NIfTI ({type(e).__name__}: {e})") from e
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return Volume(data, spacing, np.asarray(img.affine, dtype=np.float64))


SITK_EXTENSIONS = (".mha", ".mhd", ".nrrd", ".nhdr")
VOLUME_EXTENSIONS = (".nii.gz", ".nii", *SITK_EXTENSIONS)
IMAGE_2D_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif")
SITK_EXTRA = "pip install 'segbench[sitk]'"


class MissingExtraError(UserError):
    """An optional dependency needed for a file type is not installed; the message names the extra."""


def require_sitk(path: str | os.PathLike[str]) -> Any:
    """The SimpleITK module, or :class:`MissingExtraError` naming ``path`` and the ``[sitk]`` extra."""
    try:
        import SimpleITK
    except ImportError:
        raise MissingExtraError(
            f"{path}: reading {''.join(Path(path).suffixes[-1:])} files needs SimpleITK ({SITK_EXTRA})"
        ) from None
    return SimpleITK


def _read_sitk_volume(path: Path) -> Volume:
    sitk = require_sitk(path)
    try:
        img = sitk.ReadImage(str(path))
        arr = sitk.GetArrayFromImage(img)  # (z, y, x[, c])
    except RuntimeError as e:
        why = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        raise CaseLoadError(f"{path}: cannot read ({type(e).__name__}: {why})") from e
    dims = img.GetDimension()
    if dims not in (2, 3):
        raise CaseLoadError(f"{path}: {dims}D image; expected a 2D or 3D one")
    vector = img.GetNumberOfComponentsPerPixel() > 1
    order = tuple(reversed(range(dims))) + ((dims,) if vector else ())
    arr = np.transpose(arr, order)  # (x, y[, z][, c])
    spacing = np.array(img.GetSpacing(), dtype=np.float64)
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(dims, dims)
    origin = np.array(img.GetOrigin(), dtype=np.float64)
    if dims == 2:  # one slice: z of size 1
        arr = arr[:, :, None]
        spacing, origin = np.append(spacing, 1.0), np.append(origin, 0.0)
        direction = np.pad(direction, (0, 1))
        direction[2, 2] = 1.0
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # ITK's LPS world -> RAS
    return Volume(arr, tuple(float(s) for s in spacing), affine)


def read_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a 3D image: NIfTI (nibabel) or ``.mha`` / ``.mhd`` / ``.nrrd`` / ``.nhdr`` (SimpleITK).

    SimpleITK's ``(z, y, x)`` arrays are transposed to nibabel's ``(x, y, z)`` so that every
    format gives the same axis order; its LPS direction becomes a RAS affine.

    Raises:
        CaseLoadError: unreadable file (names it).
        MissingExtraError: a SimpleITK format without SimpleITK installed (names the extra).
    """
    path = Path(path)
    low = path.name.lower()
    if low.endswith((".nii", ".nii.gz")):
        return _read_nifti_volume(path)
    if low.endswith(SITK_EXTENSIONS):
        return _read_sitk_volume(path)
    raise CaseLoadError(f"{path}: not a volume format ({', '.join(VOLUME_EXTENSIONS)})")


_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def image_channels(path: str | os.PathLike[str]) -> int:
    """Channels of a 2D image without decoding it: 1 for grey modes, 3 for colour (alpha dropped;
    palette images count as colour).

    Raises:
        CaseLoadError: unreadable file, or a TIFF with another number of samples (names the file).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            return 1 if img.mode in _GREY_MODES else 3
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if path.suffix.lower() not in _TIFF:
            raise CaseLoadError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    arr = _read_tiff(path)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4)):
        return 1 if arr.ndim == 2 else 3
    raise CaseLoadError(f"{path}: TIFF of shape {arr.shape}; expected one 2D grey or RGB image")


def read_natural_image(path: str | os.PathLike[str], channels: int | None = None) -> np.ndarray:
    """Read a 2D image as ``(C, H, W)`` float32, C = 1 (grey) or 3 (colour), values as stored.

    Args:
        channels: the dataset's channel count; an image with another one is an error.

    Raises:
        CaseLoadError: unreadable, or ``channels`` given and the image has another count (names the file).
    """
    found = image_channels(path)
    if channels is not None and found != channels:
        kind = {1: "grey", 3: "colour"}
        raise CaseLoadError(
            f"{path}: a {kind[found]} image ({found} channel(s)); the dataset's images have {channels}"
        )
    return read_image_2d(path, "L" if found == 1 else "RGB")


def read_label_map(path: str | os.PathLike[str]) -> np.ndarray:
    """A label map's values as stored: ``(X, Y, Z)`` for a volume format, ``(H, W)`` for a 2D image
    (mode ``1`` as {0, 1}, palette as indices; a coloured image is an error).

    Raises:
        CaseLoadError: unreadable or unsupported file (names it).
    """
    path = Path(path)
    low = path.name.lower()
    if low.endswith(VOLUME_EXTENSIONS):
        return read_volume(path).array
    if low.endswith(tuple(_TIFF)):
        return _array_tiff(path).array
    if low.endswith(IMAGE_2D_EXTENSIONS):
        return read_label_image(path)
    raise CaseLoadError(f"{path}: unsupported label file type")


def check_same_shape(
    spatial: Sequence[int],
    other: np.ndarray | Sequence[int],
    path: str | os.PathLike[str],
    *,
    reference: str = "the image size",
) -> None:
    """Raise :class:`CaseLoadError` naming ``path`` when ``other`` (an array or its shape) is not
    ``spatial`` in size; the message says so when only the axis order differs.

    ``reference`` names ``spatial`` in the message (``the ground truth's``).
    """
    shape = tuple(int(n) for n in (other.shape if isinstance(other, np.ndarray) else other))
    spatial = tuple(int(n) for n in spatial)
    if shape == spatial:
        return
    hint = ""
    if shape[-len(spatial) :][::-1] == spatial and shape[-len(spatial) :] != spatial:
        hint = " (its axes reversed: a file written in another axis order?)"
    raise CaseLoadError(f"{path}: shape {shape} does not match {reference} {spatial}{hint}")


def zscore(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-channel z-score of ``image (C, *spatial)``; statistics inside ``mask (*spatial)`` (all if None)."""
    out = np.empty_like(image, dtype=np.float32)
    for c in range(image.shape[0]):
        vals = image[c][mask] if mask is not None and mask.any() else image[c]
        out[c] = (image[c] - vals.mean()) / (vals.std() + 1e-8)
    return out


def derive_fov(image: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Field of view of a fundus image without a released mask: ``(H, W)`` bool.

    The red channel (``image (C, H, W)``, 0..255) above ``threshold`` x its 99th percentile,
    holes filled, largest connected component kept.
    """
    red = image[0]
    fov = red > threshold * np.percentile(red, 99)
    fov = ndimage.binary_opening(fov, iterations=2)
    lab, n = ndimage.label(fov)
    if n > 1:
        sizes = ndimage.sum_labels(fov, lab, index=range(1, n + 1))
        fov = lab == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(fov)


def combine_annotators(labels: Sequence[np.ndarray], num_classes: int = 2) -> np.ndarray:
    """Consensus of binary annotations ``[(*spatial) int64]``: strict majority (two annotators: intersection).

    Raises:
        ValueError: for multi-class labels (no consensus rule is defined for them).
    """
    if num_classes != 2:  # (binary)
        raise ValueError("consensus of annotators is defined for binary labels only")
    votes = np.sum([lab > 0 for lab in labels], axis=0)
    return (votes * 2 > len(labels)).astype(np.int64)


def rescale_case(
    image: np.ndarray,
    labels: dict[str, np.ndarray],
    fov: np.ndarray | None,
    spacing: Sequence[float],
    scale: float,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None, tuple[float, ...]]:
    """Resize a case by ``scale``: image ``(C, *spatial)`` linear with anti-aliasing, labels / FOV nearest."""
    from skimage.transform import resize

    shape = tuple(max(1, round(n * scale)) for n in image.shape[1:])
    img = np.stack(
        [resize(ch, shape, order=1, anti_aliasing=scale < 1, preserve_range=True) for ch in image]
    ).astype(np.float32)

    def nearest(a: np.ndarray) -> np.ndarray:
        return resize(a, shape, order=0, anti_aliasing=False, preserve_range=True).astype(a.dtype)

    labs = {k: nearest(v) for k, v in labels.items()}
    fov = nearest(fov) if fov is not None else None
    return img, labs, fov, tuple(s / scale for s in spacing)


# ---- any supported file as stored (label and probability maps) ---------------------------

_NPZ_KEYS = ("prob", "pred", "probabilities", "seg")
EXTENSIONS = (".nii.gz", ".nii", ".png", ".gif", ".tif", ".tiff", ".npy", ".npz")


@dataclass
class ArrayFile:
    """What :func:`read_array` returns.

    Attributes:
        array: the data as stored, ``(*spatial)`` or ``(C, *spatial)``.
        spacing: voxel size per spatial axis from the file (NIfTI header, npz ``spacing``), or None.
        affine: ``(4, 4)`` voxel -> world affine of a NIfTI file, or None.
    """

    array: np.ndarray
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None


def split_extension(name: str) -> tuple[str, str] | None:
    """``("case_001", ".nii.gz")`` for ``case_001.nii.gz``; None for an extension of no reader."""
    low = name.lower()
    for ext in EXTENSIONS:
        if low.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return None


def read_label_image(path: str | os.PathLike[str]) -> np.ndarray:
    """A 2D image's values as stored, ``(H, W)``: mode ``1`` as {0, 1}, ``P`` as palette indices,
    a grey image saved as RGB(A) as one channel.

    Raises:
        CaseLoadError: unreadable, or a coloured image (names the file).
    """
    path = Path(path)
    img = _open_pil(path)
    mode = img.mode
    arr = np.asarray(img)
    if mode == "1":
        return arr.astype(np.uint8)
    if arr.ndim == 3:  # RGB(A) / LA: accept a grey image stored with colour channels
        grey = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        if not (grey == grey[..., :1]).all():
            raise CaseLoadError(
                f"{path}: colour image (mode {mode}); save label maps as grey or palette images"
            )
        arr = np.ascontiguousarray(grey[..., 0])
    return arr


def _array_tiff(path: Path) -> ArrayFile:
    try:
        return ArrayFile(_read_tiff(path))
    except CaseLoadError as tiff_error:  # e.g. LZW without imagecodecs: PIL decodes it
        try:
            return ArrayFile(read_label_image(path))
        except CaseLoadError:
            raise tiff_error from None


def _array_nifti(path: Path) -> ArrayFile:
    vol = _read_nifti_volume(path)
    if vol.array.ndim == 4:  # (X, Y, Z, C) probabilities -> (C, X, Y, Z)
        return ArrayFile(np.moveaxis(vol.array, -1, 0), vol.spacing, vol.affine)
    return ArrayFile(vol.array, vol.spacing[: vol.array.ndim], vol.affine)


def _array_npy(path: Path) -> ArrayFile:
    try:
        return ArrayFile(np.load(path, allow_pickle=False))
    except (OSError, ValueError, EOFError) as e:
        raise CaseLoadError(f"{path}: cannot read .npy ({type(e).__name__}: {e})") from e


def _array_npz(path: Path) -> ArrayFile:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            spacing = tuple(float(s) for s in z["spacing"]) if "spacing" in keys else None
            arrays = [k for k in keys if k != "spacing"]
            key = arrays[0] if len(arrays) == 1 else next((k for k in _NPZ_KEYS if k in keys), None)
            if key is None:
                raise CaseLoadError(
                    f"{path}: .npz holds {keys}; expected one array or a key of {list(_NPZ_KEYS)}"
                )
            arr = z[key]
    except CaseLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, zipfile.BadZipFile ...
        raise CaseLoadError(f"{path}: cannot read .npz ({type(e).__name__}: {e})") from e
    if key == "probabilities" and arr.ndim == 4:  # nnU-Net: (C, z, y, x) in SimpleITK order
        arr = arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 3, 2, 1)  # 2D: (C, 1, y, x)
    return ArrayFile(arr, spacing)


READERS: dict[str, Callable[[Path], ArrayFile]] = {
    ".png": lambda path: ArrayFile(read_label_image(path)),
    ".gif": lambda path: ArrayFile(read_label_image(path)),
    ".tif": _array_tiff,
    ".tiff": _array_tiff,
    ".nii": _array_nifti,
    ".nii.gz": _array_nifti,
    ".npy": _array_npy,
    ".npz": _array_npz,
}


def read_array(path: str | os.PathLike[str]) -> ArrayFile:
    """Read any supported file as stored (see the module docstring and :data:`READERS`).

    Raises:
        CaseLoadError: unsupported extension, missing or unreadable file (names the file).
    """
    path = Path(path)
    parts = split_extension(path.name)
    if parts is None:
        raise CaseLoadError(f"{path}: unsupported file type; supported: {', '.join(EXTENSIONS)}")
    if not path.is_file():
        raise CaseLoadError(f"{path}: no such file")
    return READERS[parts[1]](path)
