"""Datasets declared by their files, not by Python: ``nnunet_raw`` (nnU-Net v2 raw and MSD layouts)
and ``image_folder`` (2D ``images/`` + ``masks/``); and the volume reader the built-in MSD tasks
(:mod:`datamodules.msd`) declare themselves over.

- **nnU-Net v2 raw**: ``dataset.json`` with ``channel_names`` (``{"0": "CT", ...}``), ``labels``
  (``{"background": 0, "liver": 1, ...}``, the consecutive integers from 0) and ``file_ending``;
  ``imagesTr/CASE_XXXX<ending>`` (one file per channel, ``XXXX`` = 0000, 0001 ...),
  ``labelsTr/CASE<ending>``; ``imagesTs/`` + ``labelsTs/`` when both exist are the official test
  set (``imagesTs/`` alone holds unlabelled images and is ignored). Image formats (``png``, ``jpg``,
  ``bmp``, ``tif``) are 2D, volume formats (NIfTI, ``.mha`` / ``.mhd`` / ``.nrrd`` / ``.nhdr``
  through SimpleITK) 3D.
- **MSD**: ``dataset.json`` with ``modality`` (``{"0": "MRI"}``), ``labels`` (``{"0":
  "background", ...}``) and ``training`` (``[{"image": "./imagesTr/x.nii.gz", "label": ...}]``);
  a 4D image holds its channels last. Its ``imagesTs/`` has no labels: the test set is held out.
- **Image folder**: ``images/`` + ``masks/`` matched by file stem, optional ``test/images`` +
  ``test/masks`` (the official test set); PNG / TIFF / JPEG / BMP / GIF; channels from the first
  image (grey 1, colour 3); masks {0, 255} are binary (255 -> 1), any other mask holds its labels
  as stored, and the classes are 0..K-1 for the longest run 1, 2, ... of values the masks hold.

What a file declares (dims, channels, classes, modality) reaches the runner through
:meth:`FileDeclaredDataModule.for_root`: a subclass whose ``ClassVar``\\ s are read from ``root``,
so code that reads a DataModule class (``spatial_dims``, ``default_patch_size``, the argument
checks) reads the file's values; building ``NnunetRawDataModule(root)`` returns an instance of it.

Errors: a bad ``dataset.json`` or layout is a :class:`DatasetFileError`, one line naming the file
and the key; a case with a missing label, image or channel file, or with label values outside the
declared labels, fails to load with :class:`~datamodules.readers.CaseLoadError` naming the file
(``on_bad_case`` then skips or raises it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from bench.errors import UserError
from datamodules.args import ArgCheck, DataArgumentError
from datamodules.base import Case, CaseRef, SegDataModule
from datamodules.cases import RawCase
from datamodules.preprocess import (
    ANISO_THRESHOLD,
    GridTransform,
    check_intensity,
    check_orientation,
    check_spacing,
    ct_normalise,
    foreground_statistics,
    plan_grid,
)
from datamodules.readers import (
    IMAGE_2D_EXTENSIONS,
    SITK_EXTENSIONS,
    VOLUME_EXTENSIONS,
    CaseLoadError,
    check_same_shape,
    image_channels,
    integer_label,
    mask_label,
    mask_values,
    read_label_map,
    read_natural_image,
    read_volume,
    require_sitk,
)
from datamodules.registry import register_dataset

SPEC_FILE = "dataset.json"
_CHANNEL = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")


class DatasetFileError(UserError):
    """A dataset's own description (``dataset.json``) or folder layout is invalid; one line naming
    the file and the key."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's files declare (hashable: one declared class per spec)."""

    layout: str  # "nnunet", "msd" or "image_folder"
    spatial_dims: int
    channel_names: tuple[str, ...]
    class_names: tuple[str, ...]
    file_ending: str = ".nii.gz"
    title: str = ""
    licence: str = ""
    official_test: str = ""  # the folders of the official test set, when the root has one

    def task(self) -> str:
        fg = len(self.class_names) - 1
        channels = ", ".join(self.channel_names)
        return f"{self.title}: {channels}, {self.spatial_dims}D, {fg} foreground class(es)"


# ---- dataset.json ----------------------------------------------------------------------


def find_spec_file(root: Path) -> Path:
    """``root/dataset.json``, or the one in a single folder below ``root`` (as archives unpack)."""
    found = [root / SPEC_FILE] if (root / SPEC_FILE).is_file() else sorted(root.glob(f"*/{SPEC_FILE}"))
    if len(found) != 1:
        state = "no" if not found else f"{len(found)} ({', '.join(str(p) for p in found)})"
        raise DatasetFileError(f"{root}: {state} {SPEC_FILE} (nnU-Net v2 raw or MSD layout)")
    return found[0]


def load_json(path: Path, what: str = SPEC_FILE, hint: str = "") -> dict[str, Any]:
    """The JSON object in ``path``; :class:`DatasetFileError` naming it when unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetFileError(f"{path}: not a valid {what} ({type(e).__name__}: {e}){hint}") from None
    if not isinstance(data, dict):
        raise DatasetFileError(f"{path}: not a valid {what} (a JSON object is expected){hint}")
    return data


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _numbered(path: Path, data: dict[str, Any], key: str, what: str) -> tuple[str, ...]:
    """``{"0": name, "1": name ...}`` (channel names, MSD modality) as a tuple in index order."""
    if key not in data:
        raise DatasetFileError(f"{path}: missing key {key!r} ({what})")
    v = data[key]
    ok = isinstance(v, dict) and v and all(isinstance(n, str) and n for n in v.values())
    if ok and sorted(v, key=lambda k: (len(str(k)), str(k))) != [str(i) for i in range(len(v))]:
        ok = False
    if not ok:
        raise DatasetFileError(
            f'{path}: key {key!r}: expected {{"0": name, "1": name, ...}} ({what}), got {_short(v)}'
        )
    return tuple(v[str(i)] for i in range(len(v)))


def _nnunet_labels(path: Path, v: Any) -> tuple[str, ...]:
    if not isinstance(v, dict) or not v:
        raise DatasetFileError(
            f"{path}: key 'labels': expected {{name: value}} with 0 = background, got {_short(v)}"
        )
    for name, value in v.items():
        if isinstance(value, (list, tuple)):
            raise DatasetFileError(f"{path}: key 'labels': {name!r}: region labels (lists) are not supported")
        if isinstance(value, bool) or not isinstance(value, int):
            raise DatasetFileError(f"{path}: key 'labels': {name!r}: value {_short(value)} is not an integer")
        if name == "ignore":
            raise DatasetFileError(f"{path}: key 'labels': 'ignore': nnU-Net's ignore label is not supported")
    values = sorted(v.values())
    if values != list(range(len(values))):
        raise DatasetFileError(
            f"{path}: key 'labels': values must be the integers 0..{len(values) - 1}, got {values}"
        )
    return tuple(sorted(v, key=v.get))


def _msd_labels(path: Path, v: Any) -> tuple[str, ...]:
    ok = isinstance(v, dict) and v and all(isinstance(n, str) for n in v.values())
    keys = sorted(v, key=lambda k: (len(str(k)), str(k))) if ok else []
    if not ok or keys != [str(i) for i in range(len(v))]:
        raise DatasetFileError(
            f'{path}: key \'labels\': expected {{"0": "background", "1": name}} (MSD), got {_short(v)}'
        )
    return tuple(v[str(i)] for i in range(len(v)))


def read_spec(path: Path) -> DatasetSpec:
    """The :class:`DatasetSpec` a ``dataset.json`` declares (nnU-Net v2 or MSD).

    Raises:
        DatasetFileError: one line naming ``path`` and the key at fault.
    """
    data = load_json(path)
    title = str(data.get("name") or path.parent.name)
    licence = str(data.get("licence") or data.get("license") or "")
    if "channel_names" in data:
        channels = _numbered(path, data, "channel_names", "nnU-Net v2")
        if "labels" not in data:
            raise DatasetFileError(f"{path}: missing key 'labels' (nnU-Net v2)")
        classes = _nnunet_labels(path, data["labels"])
        if "file_ending" not in data:
            raise DatasetFileError(f"{path}: missing key 'file_ending' (nnU-Net v2)")
        ending = data["file_ending"]
        known = (*VOLUME_EXTENSIONS, *IMAGE_2D_EXTENSIONS)
        if not isinstance(ending, str) or ending.lower() not in known:
            raise DatasetFileError(
                f"{path}: key 'file_ending': {_short(ending)} is not a supported type ({', '.join(known)})"
            )
        if ending.lower().endswith(SITK_EXTENSIONS):
            require_sitk(path.parent / f"imagesTr/*{ending}")
        dims = 3 if ending.lower() in VOLUME_EXTENSIONS else 2
        base = path.parent
        test = (
            "imagesTs/ + labelsTs/" if (base / "imagesTs").is_dir() and (base / "labelsTs").is_dir() else ""
        )
        return DatasetSpec("nnunet", dims, channels, classes, ending, title, licence, test)
    if "training" not in data and "modality" not in data:
        raise DatasetFileError(
            f"{path}: missing key 'channel_names' (nnU-Net v2; MSD has 'modality' and 'training')"
        )
    channels = _numbered(path, data, "modality", "MSD")
    if "labels" not in data:
        raise DatasetFileError(f"{path}: missing key 'labels' (MSD)")
    classes = _msd_labels(path, data["labels"])
    if "training" not in data:
        raise DatasetFileError(f"{path}: missing key 'training' (MSD)")
    msd_training(path, data)
    return DatasetSpec("msd", 3, channels, classes, ".nii.gz", title, licence)


def msd_training(path: Path, data: dict[str, Any], hint: str = "") -> list[tuple[Path, Path]]:
    """``(image, label)`` paths of the ``training`` list of an MSD ``dataset.json`` at ``path``."""
    entries = data.get("training")
    if not isinstance(entries, list):
        raise DatasetFileError(f"{path}: key 'training': expected a list, got {_short(entries)}{hint}")
    pairs = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in ("image", "label")):
            raise DatasetFileError(
                f'{path}: key \'training\': entry {i} is not {{"image": ..., "label": ...}}: {_short(e)}'
                + hint
            )
        pairs.append((path.parent / e["image"], path.parent / e["label"]))
    return pairs


# ---- the index -------------------------------------------------------------------------


def _visible(folder: Path, ending: str | tuple[str, ...]) -> list[Path]:
    """Files of ``folder`` whose name ends in ``ending``, macOS ``._*`` and other hidden files left out."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.endswith(ending)
    )


def _names(channel_names: Sequence[str]) -> str:
    return f"dataset.json declares {len(channel_names)} channel(s): {', '.join(channel_names)}"


def index_nnunet(base: Path, ending: str, channel_names: Sequence[str]) -> list[CaseRef]:
    """nnU-Net v2 raw: ``imagesTr`` / ``labelsTr``, plus ``imagesTs`` / ``labelsTs`` (split ``test``)
    when both exist. An unpaired or misnamed file makes a case that fails to load, naming it.

    Raises:
        DatasetFileError: a test case id that is also a training case id.
    """
    refs = _nnunet_folder(base / "imagesTr", base / "labelsTr", ending, channel_names, None)
    if (base / "imagesTs").is_dir() and (base / "labelsTs").is_dir():
        train = {r.case_id for r in refs}
        for ref in _nnunet_folder(base / "imagesTs", base / "labelsTs", ending, channel_names, "test"):
            if ref.case_id in train:
                raise DatasetFileError(
                    f"{base / 'imagesTs'}: case {ref.case_id!r} is also a training case (ids must be unique)"
                )
            refs.append(ref)
    return refs


def _nnunet_folder(
    img_dir: Path, lab_dir: Path, ending: str, channel_names: Sequence[str], split: str | None
) -> list[CaseRef]:
    channels: dict[str, dict[int, Path]] = {}
    problems: dict[str, str] = {}
    for f in _visible(img_dir, ending):
        m = _CHANNEL.fullmatch(f.name[: -len(ending)])
        if m is None:
            stem = f.name[: -len(ending)]
            channels.setdefault(stem, {})
            problems[stem] = (
                f"{f}: no channel suffix (nnU-Net names images CASE_0000{ending}, one per channel)"
            )
            continue
        channels.setdefault(m["case"], {})[int(m["channel"])] = f
    labels = {f.name[: -len(ending)]: f for f in _visible(lab_dir, ending)}
    refs = []
    for case in sorted(set(channels) | set(labels)):
        files = channels.get(case, {})
        template = str(img_dir / f"{case}_{{:04d}}{ending}")
        problem = problems.get(case)
        gap = next((i for i in range(len(files)) if i not in files), None)
        if problem:
            pass
        elif not files:
            problem = f"{labels[case]}: no image file {template.format(0)}"
        elif case not in labels:
            problem = f"{files[min(files)]}: no label file {lab_dir / (case + ending)}"
        elif gap is not None:
            problem = f"{template.format(gap)}: missing channel file ({_names(channel_names)})"
        info = {
            "images": [files[i] for i in sorted(files)],
            "label": labels.get(case),
            "problem": problem,
            "channel_file": template,
        }
        refs.append(CaseRef(case, split, info))
    return refs


def pair_by_name(images: Sequence[Path], labels: Sequence[Path]) -> list[tuple[Path, Path]]:
    """MSD without ``dataset.json``: ``imagesTr/x`` with ``labelsTr/x``; a file without its partner
    is paired with the path it lacks (the case then fails to load, naming it)."""
    imgs = {p.name: p for p in images if not p.name.startswith(".")}
    labs = {p.name: p for p in labels if not p.name.startswith(".")}
    pairs = []
    for name in sorted(set(imgs) | set(labs)):
        img = imgs.get(name) or labs[name].parent.parent / "imagesTr" / name
        lab = labs.get(name) or imgs[name].parent.parent / "labelsTr" / name
        pairs.append((img, lab))
    return pairs


def _channel_files(folder: Path, case: str, ending: str) -> list[Path]:
    """``CASE_0000<ending>``, ``CASE_0001<ending>`` ... of ``folder``, in channel order."""
    found = {}
    for p in _visible(folder, ending):
        m = _CHANNEL.fullmatch(p.name[: -len(ending)])
        if m is not None and m["case"] == case:
            found[int(m["channel"])] = p
    return [found[i] for i in sorted(found)]


def index_msd(pairs: Sequence[tuple[Path, Path]], ending: str = ".nii.gz") -> list[CaseRef]:
    """MSD: one case per ``(image, label)``; the case id is the image's name without ``ending``. A
    listed image missing on disk is read from ``CASE_0000<ending>`` ... files where they exist (the
    nnU-Net v1 convention)."""
    refs = []
    for img, lab in pairs:
        case = img.name[: -len(ending)] if img.name.endswith(ending) else img.stem
        images = [img] if img.is_file() else _channel_files(img.parent, case, ending)
        problem = None
        if not images:
            problem = f"{lab}: no image file {img}" if lab.is_file() else f"{img}: no image file (nor {lab})"
        elif not lab.is_file():
            problem = f"{images[0]}: no label file {lab}"
        refs.append(CaseRef(case, None, {"images": images, "label": lab, "problem": problem}))
    return refs


# ---- reading one case ------------------------------------------------------------------


def read_volume_case(
    info: dict[str, Any],
    *,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    channel_names: Sequence[str],
) -> RawCase:
    """One nnU-Net / MSD case as stored: image ``(C, *spatial)`` float32, label int64, spacing, affine.

    Raises:
        CaseLoadError: a missing partner or channel file, an unreadable file, sizes that differ,
            another number of channels than declared, or label values outside ``0..num_classes-1``
            (each names the file).
    """
    if info.get("problem"):
        raise CaseLoadError(info["problem"])
    image, spacing, affine = read_volume_image(
        info, spatial_dims=spatial_dims, in_channels=in_channels, channel_names=channel_names
    )
    label_path = info["label"]
    label = integer_label(read_label_map(label_path), label_path, num_classes)
    check_same_shape(image.shape[1:], label, label_path)
    return RawCase(image, label, spacing, affine)


def read_volume_image(
    info: dict[str, Any], *, spatial_dims: int, in_channels: int, channel_names: Sequence[str]
) -> tuple[np.ndarray, tuple[float, ...] | None, np.ndarray | None]:
    """The image files of one nnU-Net / MSD case, never its label file: image ``(C, *spatial)``
    float32 as stored, spacing and affine (None for 2D files).

    Raises:
        CaseLoadError: a missing or unreadable channel file, sizes that differ or another number of
            channels than declared (each names the file).
    """
    files: list[Path] = info["images"]
    if not files or not all(Path(f).is_file() for f in files):
        raise CaseLoadError(info.get("problem") or f"{files[0] if files else info}: no image file")
    parts, spacing, affine = [], None, None
    for path in files:
        if spatial_dims == 2:
            arr = read_natural_image(path)
        else:
            vol = read_volume(path)
            arr = np.moveaxis(vol.array, -1, 0) if vol.array.ndim == 4 else vol.array[None]  # (X, Y, Z, C)
            if spacing is None:
                spacing, affine = vol.spacing, vol.affine
        if parts:
            check_same_shape(parts[0].shape[1:], arr.shape[1:], path, reference=f"{files[0].name}'s size")
        parts.append(arr)
    image = (parts[0] if len(parts) == 1 else np.concatenate(parts)).astype(np.float32)
    names = channel_names or tuple(f"channel {i}" for i in range(in_channels))
    if image.shape[0] < in_channels and "channel_file" in info:
        missing = info["channel_file"].format(len(files))
        raise CaseLoadError(f"{missing}: missing channel file ({_names(names)})")
    if image.shape[0] != in_channels:
        raise CaseLoadError(f"{files[0]}: {image.shape[0]} channel(s); {_names(names)}")
    return image, spacing, affine


class OriginalGrid(NamedTuple):
    """A test case's prediction mapped back to the file's grid (:meth:`VolumeDataModule.to_original`).

    Attributes:
        prob: ``(K, *original_shape)`` float32 class probabilities.
        label: ``(*original_shape)`` int64, the label file as read.
        spacing: the file's voxel size per axis (mm).
        fov: ``(*original_shape)`` bool field of view, or None (volumes have none).
    """

    prob: np.ndarray
    label: np.ndarray
    spacing: tuple[float, ...]
    fov: np.ndarray | None


class VolumeDataModule(SegDataModule):
    """Reader of the nnU-Net v2 raw (``layout = "nnunet"``) and MSD (``"msd"``) layouts. A subclass
    declares ``layout``, ``file_ending``, the classes and channels; :class:`NnunetRawDataModule`
    reads them from ``dataset.json``. MSD without ``dataset.json``: ``imagesTr`` and ``labelsTr``
    are paired by file name.

    Preprocessing (``docs/preprocessing.md``, :mod:`datamodules.preprocess`); none set: each case
    is read in its file's grid, as before these options existed.

    Args:
        spacing: resample to ``[sx, sy, sz]`` (mm): images linear (nearest along the out-of-plane
            axis of anisotropic data, nnU-Net's separate-z rule), labels nearest. None: the file's grid.
        orientation: ``"RAS"``: reorient by the affine first. None: the file's axis order.
        intensity: None: the dataset's own rule (its intensity window if any, then a per-case
            z-score); ``"zscore"``: per-case z-score of the intensities as stored; ``"ct"``: clip to
            the 0.5 / 99.5 foreground percentiles of the training cases, z-score with their
            foreground mean and std (stated in ``split_info()["preprocess"]``).

    With ``spacing`` or ``orientation`` the test metrics are computed on the file's grid:
    :meth:`to_original` maps a prediction back (``maps_back``).
    """

    layout: ClassVar[str] = "msd"
    file_ending: ClassVar[str] = ".nii.gz"
    annotators = ("manual",)
    spec_hint: ClassVar[str] = ""
    extra_arg_checks: ClassVar[dict[str, ArgCheck]] = {
        "spacing": check_spacing,
        "orientation": check_orientation,
        "intensity": check_intensity,
    }

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        spacing: Sequence[float] | None = None,
        orientation: str | None = None,
        intensity: str | None = None,
        **kwargs: Any,
    ) -> None:
        own = {"spacing": spacing, "orientation": orientation, "intensity": intensity}
        self._check_args({**own, "scale": kwargs.get("scale", 1.0)})
        super().__init__(root, **kwargs)
        self.target_spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.orientation = orientation
        self.intensity = intensity
        self._intensity_stats: list[dict[str, Any]] | None = None

    @property
    def maps_back(self) -> bool:
        """True when cases are resampled or reoriented: test predictions go back through
        :meth:`to_original` before they are scored."""
        return self.target_spacing is not None or self.orientation is not None

    @property
    def preprocessing(self) -> bool:
        """True when any preprocessing option is set."""
        return self.maps_back or self.intensity is not None

    def list_cases(self) -> list[CaseRef]:
        spec = self.find_files(SPEC_FILE)
        if self.layout == "nnunet":
            return index_nnunet(spec[0].parent, self.file_ending, self.channel_names) if spec else []
        if spec:
            data = load_json(spec[0], f"MSD {SPEC_FILE}", self.spec_hint)
            if "training" in data:
                return index_msd(msd_training(spec[0], data, self.spec_hint), self.file_ending)
        images = self.find_files(f"imagesTr/*{self.file_ending}")
        labels = self.find_files(f"labelsTr/*{self.file_ending}")
        return index_msd(pair_by_name(images, labels), self.file_ending)

    def read_raw(self, ref: CaseRef) -> RawCase:
        """The case as its files hold it (no intensity window, no z-score)."""
        return read_volume_case(
            ref.info,
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            channel_names=self.channel_names,
        )

    def adjust_intensities(self, image: np.ndarray) -> np.ndarray:
        """Applied to the raw ``image (C, *spatial)`` before the z-score; default: nothing."""
        return image

    def load_case(self, ref: CaseRef) -> Case:
        raw = self.read_raw(ref)
        if not self.preprocessing:  # the file's grid, the dataset's own intensities
            image = self.adjust_intensities(raw.image)
            return self.make_case(ref.case_id, image, {"manual": raw.label}, spacing=raw.spacing)
        where = str(ref.info.get("label") or ref.case_id)
        image, grid = self.prepare_input(raw.image, raw.spacing, raw.affine, where=where)
        extras: dict[str, Any] = {}
        if self.intensity == "ct":
            extras["intensity_stats"] = self.intensity_statistics()
        if grid is None:
            label, spacing = raw.label, raw.spacing
        else:
            label, spacing = grid.label(raw.label), grid.spacing
            extras.update(grid.to_extras(), original_label=raw.label, original_affine=raw.affine)
        normalise = self.intensity != "ct"
        return self.make_case(
            ref.case_id, image, {"manual": label}, spacing=spacing, extras=extras, normalise=normalise
        )

    def load_unlabelled(self, ref: CaseRef) -> Case:
        """The case without its label (a training case outside the label budget): the image files
        only, through the same intensity option, grid and z-score as :meth:`load_case`, so the
        image is the one ``load_case`` returns; ``label`` all zeros, ``extras["unlabelled"]``."""
        image, spacing, affine = read_volume_image(
            ref.info,
            spatial_dims=self.spatial_dims,
            in_channels=self.in_channels,
            channel_names=self.channel_names,
        )
        if not self.preprocessing:
            image = self.adjust_intensities(image)
            return self.make_unlabelled_case(ref.case_id, image, spacing=spacing)
        where = str(ref.info.get("label") or ref.case_id)
        image, grid = self.prepare_input(image, spacing, affine, where=where)
        extras: dict[str, Any] = {}
        if self.intensity == "ct":
            extras["intensity_stats"] = self.intensity_statistics()
        if grid is not None:
            spacing = grid.spacing
            extras.update(grid.to_extras())
        normalise = self.intensity != "ct"
        return self.make_unlabelled_case(
            ref.case_id, image, spacing=spacing, extras=extras, normalise=normalise
        )

    def prepare_input(
        self,
        image: np.ndarray,
        spacing: Sequence[float] | None,
        affine: np.ndarray | None,
        *,
        where: str = "",
    ) -> tuple[np.ndarray, GridTransform | None]:
        """An image as stored ``(C, *spatial)`` with the intensity option applied (``ct``: normalised;
        None: the dataset's window; the z-score comes later, in :meth:`make_case`) and moved to the
        preprocessed grid; also the :class:`GridTransform` (None without ``spacing`` / ``orientation``).

        Raises:
            PreprocessError: ``orientation`` without an affine (names ``where``).
        """
        if self.intensity == "ct":
            image = ct_normalise(image, self.intensity_statistics())
        elif self.intensity is None:
            image = self.adjust_intensities(image)
        if not self.maps_back:
            return image, None
        grid = plan_grid(
            image.shape[1:],
            spacing,
            affine,
            target_spacing=self.target_spacing,
            orientation=self.orientation,
            where=where,
        )
        return grid.image(image), grid

    def intensity_statistics(self) -> list[dict[str, Any]]:
        """Per-channel foreground statistics of the training cases (read as stored), computed once:
        what ``intensity: ct`` clips and z-scores with. Test and validation cases never enter them.

        Raises:
            PreprocessError: no training case holds foreground.
        """
        if self._intensity_stats is None:
            if not self.splits:
                self.setup("fit")
            if self._intensity_stats is not None:  # setup loaded the cases, which computed them
                return self._intensity_stats
            pairs = []
            for cid in self.splits["train"]:
                if cid in self.unlabelled:
                    continue  # outside the label budget: its label is never read
                try:
                    raw = self.read_raw(self._refs[cid])
                except CaseLoadError:
                    continue  # skipped by on_bad_case when the case itself loads
                pairs.append((raw.image, raw.label))
            channels = self.channel_names or tuple(f"channel {i}" for i in range(self.in_channels))
            self._intensity_stats = foreground_statistics(pairs, len(pairs), channels)
        return self._intensity_stats

    def cache_settings(self) -> dict[str, Any]:
        """The base's settings, plus (``intensity: ct``) the training statistics the cases are
        normalised with: they depend on the split, which the constructor arguments do not state."""
        settings = super().cache_settings()
        if self.intensity == "ct":
            settings["intensity_stats"] = self.intensity_statistics()
        return settings

    def to_original(self, case_id: str, prob: np.ndarray) -> OriginalGrid:
        """Class probabilities ``prob (K, *spatial)`` of a loaded case, on its file's grid, with the
        file's label and spacing: the inverse of the resampling and reorientation
        (:meth:`GridTransform.back`). Without ``maps_back`` the case's own label and spacing.
        """
        case = self.case(case_id)
        if "original_shape" not in case.extras:
            return OriginalGrid(prob, case.label, tuple(case.spacing or ()), case.fov)
        grid = GridTransform.from_extras(case.extras)
        spacing = tuple(float(s) for s in case.extras["original_spacing"])
        return OriginalGrid(grid.back(prob), case.extras["original_label"], spacing, None)

    def map_back(self, case_id: str, array: np.ndarray) -> np.ndarray:
        """Any ``(C, *spatial)`` float array on a loaded case's grid (its image) on the file's grid."""
        case = self.case(case_id)
        if "original_shape" not in case.extras:
            return array
        return GridTransform.from_extras(case.extras).back(array)

    def split_info(self) -> dict[str, Any]:
        """The base's, plus ``preprocess`` when an option is set: ``spacing``, ``orientation``,
        ``intensity``, ``anisotropy_threshold``, ``intensity_stats`` (``ct``: the clip bounds,
        mean and std used per channel) and ``test_grid`` (``{case_id: {shape, spacing}}`` of the
        files the test metrics are computed on)."""
        info = super().split_info()
        if not self.preprocessing:
            return info
        grids = {}
        for cid in self.splits.get("test", []):
            if cid in self.skipped or cid not in self._refs:
                continue
            case = self.case(cid)
            shape = case.extras.get("original_shape", list(case.label.shape))
            spacing = case.extras.get("original_spacing", list(case.spacing or ()))
            grids[cid] = {"shape": list(shape), "spacing": list(spacing)}
        stats = self.intensity_statistics() if self.intensity == "ct" else None
        info["preprocess"] = {
            "spacing": None if self.target_spacing is None else list(self.target_spacing),
            "orientation": self.orientation,
            "intensity": self.intensity,
            "anisotropy_threshold": ANISO_THRESHOLD,
            "intensity_stats": stats,
            "test_grid": grids,
        }
        return info


# ---- datasets declared by their files --------------------------------------------------

_DECLARED: dict[tuple[type, DatasetSpec], type] = {}
_DEFAULT_PATCH = {2: (128, 128), 3: (64, 64, 64)}


def _declare(base: type[FileDeclaredDataModule], spec: DatasetSpec) -> type[FileDeclaredDataModule]:
    """The subclass of ``base`` whose ``ClassVar``\\ s are ``spec``'s (one per spec, reused)."""
    key = (base, spec)
    if key not in _DECLARED:
        attrs = {
            "__module__": base.__module__,
            "__doc__": f"{base.name}: {spec.task()} (declared by its files)",
            "spec": spec,
            "declared_from": base,
            "spatial_dims": spec.spatial_dims,
            "in_channels": len(spec.channel_names),
            "channel_names": spec.channel_names,
            "num_classes": len(spec.class_names),
            "class_names": spec.class_names,
            "default_patch_size": _DEFAULT_PATCH[spec.spatial_dims],
            "layout": spec.layout,
            "file_ending": spec.file_ending,
            "task": spec.task(),
            "license": spec.licence or base.license,
            "split_note": f"official test set: {spec.official_test}; seeded k-fold over the rest"
            if spec.official_test
            else "",
        }
        _DECLARED[key] = type(f"{base.__name__}[{spec.title}]", (base,), attrs)
    return _DECLARED[key]


def _restore(base: type[FileDeclaredDataModule], spec: DatasetSpec) -> FileDeclaredDataModule:
    """Unpickling (DataLoader workers under ``spawn``, DDP): the declared class, rebuilt from ``spec``."""
    return object.__new__(_declare(base, spec))


class FileDeclaredDataModule(SegDataModule):
    """A dataset whose dims, channels and classes are read from files under ``root``.

    ``cls(root, **kwargs)`` builds an instance of :meth:`for_root` ``(root)``, the subclass that
    declares what the files say; the registered class itself only documents the layout.
    """

    spec: ClassVar[DatasetSpec | None] = None
    declared_from: ClassVar[type | None] = None
    layout_note: ClassVar[str] = ""
    license = "as the dataset states (dataset.json `licence`); not stated otherwise"

    def __new__(cls, root: str | os.PathLike[str] | None = None, *args: Any, **kwargs: Any) -> Any:
        return super().__new__(cls.for_root(root))

    def __reduce__(self) -> tuple[Any, ...]:
        cls = type(self)
        return (_restore, (cls.declared_from, cls.spec), self.__dict__)

    @classmethod
    def for_root(cls, root: str | os.PathLike[str] | None = None) -> type[FileDeclaredDataModule]:
        """The class describing the dataset at ``root``: ``spatial_dims``, ``in_channels``,
        ``channel_names``, ``num_classes``, ``class_names``, ``task``, ``license`` read from its files.

        Raises:
            DataArgumentError: no ``root``, or not a folder.
            DatasetFileError: the files do not declare a dataset (one line naming the file and key).
        """
        if cls.spec is not None:
            return cls
        if root is None:
            raise DataArgumentError(f"{cls.name}: `root` is required: the folder holding {cls.layout_note}")
        where = Path(root)
        if not where.is_dir():
            state = "does not exist" if not where.exists() else "is not a folder"
            raise DataArgumentError(f"{cls.name}: root {where} {state}")
        return _declare(cls, cls.read_spec(where))

    @classmethod
    def read_spec(cls, root: Path) -> DatasetSpec:
        """What the files under ``root`` declare."""
        raise NotImplementedError

    @classmethod
    def content_digest(cls, root: str | os.PathLike[str]) -> str:
        """12 hex digits naming the dataset under ``root`` by its files: every file's path relative
        to ``root`` and its size, plus the bytes of ``dataset.json`` when there is one (no image is
        read). The runner puts it in the run's identity (``dataset.kwargs.files_digest``), since the
        folder itself is not (the same data in another folder is the same run), and checks it again
        before a run starts: two datasets read through one generic reader never share a run id, and
        a folder whose files changed since a run was planned is refused.
        """
        base = Path(root)
        h = hashlib.sha256()
        for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(f for f in filenames if not f.startswith(".")):
                path = Path(dirpath) / name
                h.update(f"{path.relative_to(base).as_posix()}\0{path.stat().st_size}\n".encode())
                if name == SPEC_FILE:
                    h.update(path.read_bytes())
        return h.hexdigest()[:12]

    @classmethod
    def check_available(cls, root: str | os.PathLike[str] | None = None, *, download: bool = False) -> None:
        """``root`` is given, its files declare a dataset and it holds at least one case.

        Raises:
            DataArgumentError / DatasetFileError: naming the folder or the file.
        """
        declared = cls.for_root(root)
        try:
            found = declared(root).list_cases()
        except OSError as e:
            raise DataArgumentError(f"{cls.name}: root {root}: {e}") from None
        if not found:
            raise DataArgumentError(f"{cls.name}: root {root} holds no cases ({cls.layout_note})")

    @classmethod
    def dataset_info(cls, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The base's info, from the files when ``root`` declares a dataset."""
        if cls.spec is None and root is not None:
            try:
                return cls.for_root(root).dataset_info(root)
            except (ValueError, OSError):
                pass
        return super().dataset_info(root)


@register_dataset("nnunet_raw", needs_root=True)
class NnunetRawDataModule(FileDeclaredDataModule, VolumeDataModule):
    """Any dataset in nnU-Net v2 raw or MSD layout; everything it declares comes from ``dataset.json``."""

    task = "any dataset in nnU-Net v2 raw or MSD layout (dims, channels, classes from dataset.json)"
    spatial_dims = 3
    default_patch_size = _DEFAULT_PATCH[3]
    layout_note = "dataset.json, imagesTr/ and labelsTr/ (nnU-Net v2 raw or MSD layout)"

    @classmethod
    def read_spec(cls, root: Path) -> DatasetSpec:
        return read_spec(find_spec_file(root))


# ---- image folders -----------------------------------------------------------------------

_SCANNED: dict[tuple[Any, ...], int] = {}


def image_folder_base(root: Path) -> Path:
    """``root``, or the one folder below it holding ``images/``."""
    if (root / "images").is_dir():
        return root
    below = [p.parent for p in sorted(root.glob("*/images")) if p.is_dir()]
    return below[0] if len(below) == 1 else root


def _by_stem(folder: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in _visible(folder, ""):
        if p.suffix.lower() in IMAGE_2D_EXTENSIONS:
            out.setdefault(p.stem, []).append(p)
    return out


def _folder_pairs(img_dir: Path, mask_dir: Path, split: str | None) -> list[CaseRef]:
    images, masks = _by_stem(img_dir), _by_stem(mask_dir)
    refs = []
    for stem in sorted(set(images) | set(masks)):
        imgs, ms = images.get(stem, []), masks.get(stem, [])
        problem = None
        for found in (imgs, ms):
            if len(found) > 1:
                names = ", ".join(p.name for p in found)
                problem = f"{found[0]}: {len(found)} files share the stem {stem!r}: {names}"
        if problem is None and not imgs:
            problem = f"{ms[0]}: no image {img_dir / stem}.* for this mask"
        elif problem is None and not ms:
            problem = f"{imgs[0]}: no mask {mask_dir / stem}.* for this image"
        info = {"image": imgs[0] if imgs else None, "mask": ms[0] if ms else None, "problem": problem}
        refs.append(CaseRef(stem, split, info))
    return refs


def index_image_folder(base: Path) -> list[CaseRef]:
    """``images/`` + ``masks/``, and ``test/images`` + ``test/masks`` (split ``test``) when both exist.

    Raises:
        DatasetFileError: a test stem that is also a training stem.
    """
    refs = _folder_pairs(base / "images", base / "masks", None)
    test = base / "test"
    if (test / "images").is_dir() and (test / "masks").is_dir():
        train = {r.case_id for r in refs}
        for ref in _folder_pairs(test / "images", test / "masks", "test"):
            if ref.case_id in train:
                raise DatasetFileError(f"{test / 'images'}: case {ref.case_id!r} is also in {base}/images")
            refs.append(ref)
    return refs


def _num_classes(base: Path, refs: Sequence[CaseRef]) -> int:
    """K for the longest run 1, 2, ... of the values the (readable) masks hold, at least 2."""
    masks = [r.info["mask"] for r in refs if r.info["mask"] is not None]
    stats = [p.stat() for p in masks]
    key = (str(base), *((str(p), st.st_size, st.st_mtime_ns) for p, st in zip(masks, stats)))
    if key not in _SCANNED:
        seen: set[int] = set()
        for path in masks:
            try:
                seen |= mask_values(read_label_map(path))
            except CaseLoadError:
                continue  # reported when the case loads
        k = 1
        while k in seen:
            k += 1
        _SCANNED[key] = max(k, 2)
    return _SCANNED[key]


@register_dataset("image_folder", needs_root=True)
class ImageFolderDataModule(FileDeclaredDataModule):
    """Any 2D dataset as ``images/`` + ``masks/`` (optional ``test/``); channels, classes from the files."""

    task = "any 2D dataset as images/ + masks/ (optional test/images + test/masks)"
    spatial_dims = 2
    default_patch_size = _DEFAULT_PATCH[2]
    annotators = ("manual",)
    layout_note = "images/ and masks/ (optional test/images and test/masks)"

    @classmethod
    def read_spec(cls, root: Path) -> DatasetSpec:
        base = image_folder_base(root)
        for sub in ("images", "masks"):
            if not (base / sub).is_dir():
                raise DatasetFileError(f"{root}: no {sub}/ folder (image_folder layout: {cls.layout_note})")
        refs = index_image_folder(base)
        first = next((r.info["image"] for r in refs if r.info["image"] is not None), None)
        if first is None:
            raise DatasetFileError(f"{base / 'images'}: no image ({', '.join(IMAGE_2D_EXTENSIONS)})")
        try:
            channels = ("grey",) if image_channels(first) == 1 else ("R", "G", "B")
        except CaseLoadError as e:
            raise DatasetFileError(f"{e} (the first image sets the dataset's channels)") from None
        k = _num_classes(base, refs)
        names = ("foreground",) if k == 2 else tuple(f"class_{i}" for i in range(1, k))
        classes = ("background", *names)
        test = "test/images + test/masks" if any(r.split == "test" for r in refs) else ""
        return DatasetSpec("image_folder", 2, channels, classes, "", base.name, "", test)

    def list_cases(self) -> list[CaseRef]:
        return index_image_folder(image_folder_base(self.root)) if self.root is not None else []

    def read_raw(self, ref: CaseRef) -> RawCase:
        """The case as its files hold it: image ``(C, H, W)`` float32 as stored, mask as labels."""
        info = ref.info
        if info["problem"]:
            raise CaseLoadError(info["problem"])
        image = read_natural_image(info["image"], self.in_channels)
        label = mask_label(read_label_map(info["mask"]), info["mask"], self.num_classes)
        check_same_shape(image.shape[1:], label, info["mask"])
        return RawCase(image, label)

    def load_case(self, ref: CaseRef) -> Case:
        raw = self.read_raw(ref)
        return self.make_case(ref.case_id, raw.image, {"manual": raw.label})

    def load_unlabelled(self, ref: CaseRef) -> Case:
        """The image only (never the mask), as :meth:`load_case` makes it; ``label`` all zeros."""
        info = ref.info
        if info["image"] is None or (info["problem"] and info["mask"] is not None):  # not just a lost mask
            raise CaseLoadError(info["problem"])
        image = read_natural_image(info["image"], self.in_channels)
        return self.make_unlabelled_case(ref.case_id, image)
