"""Shared DataModule logic: index -> split (saved once, :mod:`datamodules.splits`) -> patch
sampling -> loaders.

A dataset subclasses :class:`SegDataModule` and *declares* what differs: class attributes
(``task``, ``spatial_dims``, ``in_channels``, ``num_classes``, ``class_names``, ``license``,
``default_patch_size``, ``folder``, ``num_cases``, ``resources``, ``annotators``) plus
``list_cases`` (the index, with the official split where there is one) and, unless the
file-table default fits, ``load_case`` (read one case from its release format).

The file-table default: ``list_cases`` puts the paths of a 2D case in ``CaseRef.info``
(``image``, ``labels`` = ``{annotator: path}``, optional ``fov``) and the base reads them with
:mod:`datamodules.readers`. Every reader path ends in :meth:`SegDataModule.make_case`, which
rescales (``scale``), z-scores the image inside the FOV, keeps every annotator as
``extras["label_<name>"]`` and picks ``label`` by ``annotator``.

Bad cases: ``load_case`` raises :class:`~datamodules.readers.CaseLoadError` (a ``ValueError``
naming the file) for an unreadable file, an image/label size mismatch or label values outside
the expected set. The loaders then skip that case with one warning listing every skipped case
and why (``on_bad_case="skip"``, default; ``"raise"`` stops instead); ``split_info()["skipped"]``
records them.

Batches:
- train: ``image (B, in_channels, *patch)`` float32, ``label (B, 1, *patch)`` int64;
- val/test (one whole case): ``image (1, in_channels, *spatial)``, ``label (1, 1, *spatial)``,
  ``fov (1, 1, *spatial)`` bool when the dataset has field-of-view masks, ``case_id``,
  ``spacing``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from datamodules.download import Resource, fetch_resources
from datamodules.readers import (
    CaseLoadError,
    check_same_shape,
    combine_annotators,
    derive_fov,
    read_binary_label,
    read_fov,
    read_image_2d,
    rescale_case,
    zscore,
)
from datamodules.sampling import CaseDataset, PatchSampler, build_augmentation
from datamodules.splits import load_or_make_split

CONSENSUS = "consensus"
_BAD_CASE_POLICIES = ("skip", "raise")


@dataclass
class CaseRef:
    """One entry of a dataset's index: ``split`` is ``train``/``val``/``test`` or None."""

    case_id: str
    split: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Case:
    """One loaded case.

    Attributes:
        image: ``(C, *spatial)`` float32, normalised.
        label: ``(*spatial)`` int64 in ``[0, num_classes)``.
        fov: ``(*spatial)`` bool field of view, or None.
        spacing: voxel size per spatial axis.
        extras: anything else (every annotator ``label_<name>``, the ``annotator`` used for
            ``label``, landmarks ...).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    fov: np.ndarray | None = None
    spacing: tuple[float, ...] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class SegDataModule(L.LightningDataModule):
    """Base DataModule. Subclasses implement :meth:`list_cases` (and :meth:`load_case` unless
    the file-table default fits).

    Args:
        root: folder holding (or receiving) the release files; default :meth:`default_root`
            (``$SEGBENCH_DATA/<folder>`` or ``~/.cache/segbench/data/<folder>``).
        download: fetch the release (``resources``) when ``root`` lacks it.
        batch_size: training batch size (val/test use one whole case per batch).
        patch_size: training patch / inference window; defaults to ``default_patch_size``.
        samples_per_epoch: number of random patches that make one training epoch.
        fg_oversample: probability that a patch is centred on a foreground voxel (nnU-Net: 0.33).
        augment: MONAI augmentation probabilities, e.g. ``{"flip": 0.5, "rot90": 0.5}``.
        fold: k-fold index over the non-test cases (ignored with a fixed validation split).
        num_folds: number of folds; ``1`` keeps ``val_fraction`` of the training pool aside.
        split_seed: seed of the split (recorded with the run).
        num_workers: DataLoader workers.
        cache_dir: where split files are written (default ``$SEGBENCH_CACHE`` or
            ``~/.cache/segbench``), since ``root`` may be read-only.
        annotator: which annotator becomes ``label``: None = the first of ``annotators``, a
            name from ``annotators``, or ``"consensus"`` (strict majority vote of the
            annotators a case has; for two annotators that is their intersection). A case
            lacking the named annotator (DRIVE training images have no 2nd observer) falls back
            to the first one; ``Case.extras["annotator"]`` says which was used.
        scale: resize factor applied to every case on load (``0.5`` halves each axis; images
            linear with anti-aliasing, labels/FOV nearest; spacing is divided by it).
        limit_cases: keep at most this many cases per split (smoke runs); the split file is
            unchanged and ``split_info()`` lists the cases actually used.
        on_bad_case: ``"skip"`` (warn, listing every skipped case and why) or ``"raise"``.
    """

    name: ClassVar[str] = ""
    task: ClassVar[str] = ""
    spatial_dims: ClassVar[int] = 2
    in_channels: ClassVar[int] = 1
    num_classes: ClassVar[int] = 2
    class_names: ClassVar[tuple[str, ...]] = ("background", "foreground")
    license: ClassVar[str] = ""
    default_patch_size: ClassVar[tuple[int, ...]] = (128, 128)
    fixed_val_split: ClassVar[bool] = False
    val_fraction: ClassVar[float] = 0.2
    # where the release lives and what a complete copy holds
    folder: ClassVar[str] = ""
    num_cases: ClassVar[int | None] = None
    resources: ClassVar[tuple[Resource, ...]] = ()
    download_note: ClassVar[str] = ""
    split_note: ClassVar[str] = ""
    # reading (file-table default)
    annotators: ClassVar[tuple[str, ...]] = ()
    image_mode: ClassVar[str] = "RGB"
    derive_missing_fov: ClassVar[bool] = False
    batch_extras: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        download: bool = False,
        batch_size: int = 4,
        patch_size: Sequence[int] | None = None,
        samples_per_epoch: int = 64,
        fg_oversample: float = 0.33,
        augment: dict[str, float] | None = None,
        fold: int = 0,
        num_folds: int = 5,
        split_seed: int = 0,
        num_workers: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        annotator: str | None = None,
        scale: float = 1.0,
        limit_cases: int | None = None,
        on_bad_case: str = "skip",
    ) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else self.default_root()
        self.download = download
        self.batch_size = batch_size
        self.patch_size = tuple(patch_size or self.default_patch_size)
        if len(self.patch_size) != self.spatial_dims:
            raise ValueError(f"{self.name}: patch_size {self.patch_size} needs {self.spatial_dims} entries")
        self.samples_per_epoch = samples_per_epoch
        self.fg_oversample = fg_oversample
        self.augment = dict(augment or {})
        if not 0 <= fold < max(num_folds, 1):
            raise ValueError(f"{self.name}: fold {fold} is outside 0..{num_folds - 1}")
        self.fold = fold
        self.num_folds = num_folds
        self.split_seed = split_seed
        self.num_workers = num_workers
        default_cache = os.environ.get("SEGBENCH_CACHE", Path.home() / ".cache" / "segbench")
        self.cache_dir = Path(cache_dir or default_cache)
        if annotator is not None and self.annotators and annotator not in (*self.annotators, CONSENSUS):
            raise ValueError(
                f"{self.name}: unknown annotator {annotator!r}; choose from {[*self.annotators, CONSENSUS]}"
            )
        self.annotator = annotator
        if scale <= 0:
            raise ValueError(f"{self.name}: scale must be > 0, got {scale}")
        self.scale = scale
        self.limit_cases = limit_cases
        if on_bad_case not in _BAD_CASE_POLICIES:
            raise ValueError(f"{self.name}: on_bad_case must be one of {_BAD_CASE_POLICIES}")
        self.on_bad_case = on_bad_case
        self.splits: dict[str, list[str]] = {}
        self.skipped: dict[str, str] = {}
        self._refs: dict[str, CaseRef] = {}
        self._cache: dict[str, Case] = {}

    # ---- where the data is -------------------------------------------------------------
    @classmethod
    def default_root(cls) -> Path | None:
        """``$SEGBENCH_DATA/<folder>`` or ``~/.cache/segbench/data/<folder>``; None without a folder."""
        if not cls.folder:
            return None
        base = os.environ.get("SEGBENCH_DATA") or Path.home() / ".cache" / "segbench" / "data"
        return Path(base) / cls.folder

    @classmethod
    def is_present(cls, root: str | os.PathLike[str] | None = None) -> bool:
        """True when ``root`` (default :meth:`default_root`) holds at least one readable case index entry."""
        try:
            return bool(cls(root=root).list_cases())
        except (OSError, ValueError):
            return False

    @classmethod
    def describe_split(cls) -> str:
        """How the split is made: ``split_note`` or the generic rule."""
        if cls.split_note:
            return cls.split_note
        if cls.fixed_val_split:
            return "fixed train/val/test split"
        return "seeded k-fold over all cases; the held-out fold doubles as test"

    @classmethod
    def dataset_info(cls, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """What ``segbench datasets`` prints: task, dims, case count, licence, presence, URLs."""
        where = Path(root) if root is not None else cls.default_root()
        return {
            "name": cls.name,
            "task": cls.task,
            "spatial_dims": cls.spatial_dims,
            "in_channels": cls.in_channels,
            "num_classes": cls.num_classes,
            "class_names": list(cls.class_names),
            "num_cases": cls.num_cases,
            "annotators": list(cls.annotators),
            "split": cls.describe_split(),
            "license": cls.license,
            "root": str(where) if where is not None else None,
            "present": cls.is_present(where),
            "urls": [r.url for r in cls.resources],
            "download_note": cls.download_note,
        }

    def prepare_data(self) -> None:
        """Download, verify and extract ``resources`` into ``root`` when ``download`` and no data."""
        if not self.download or self.root is None or self.is_present(self.root):
            return
        if not self.resources:
            raise FileNotFoundError(
                f"{self.name}: no cases under {self.root} and no automatic download. {self.download_note}"
            )
        fetch_resources(self.resources, self.root)

    def find_files(self, pattern: str) -> list[Path]:
        """Sorted files matching ``pattern`` under ``root`` or one wrapping folder (as archives add)."""
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(self.root.glob(pattern)) or sorted(self.root.glob(f"*/{pattern}"))

    # ---- what a dataset declares -------------------------------------------------------
    def list_cases(self) -> list[CaseRef]:
        """The dataset's index, with the official split in ``CaseRef.split`` where one exists."""
        raise NotImplementedError

    def load_case(self, ref: CaseRef) -> Case:
        """Read one case; the default reads the file table in ``ref.info`` (2D image, labels, FOV).

        Raises:
            CaseLoadError: unreadable file, size mismatch or unexpected label values (names the file).
        """
        info = ref.info
        if "image" not in info:
            raise NotImplementedError(f"{type(self).__name__} must implement load_case")
        image = read_image_2d(info["image"], self.image_mode)
        labels = {}
        for who, path in info["labels"].items():
            labels[who] = read_binary_label(path, invert=bool(info.get("invert_label", False)))
            check_same_shape(image.shape[1:], labels[who], path)
        fov = None
        if info.get("fov"):
            fov = read_fov(info["fov"])
            check_same_shape(image.shape[1:], fov, info["fov"])
        elif self.derive_missing_fov:
            fov = derive_fov(image)
        return self.make_case(ref.case_id, image, labels, fov=fov)

    # ---- shared per-case logic -----------------------------------------------------------
    def make_case(
        self,
        case_id: str,
        image: np.ndarray,
        labels: dict[str, np.ndarray],
        *,
        fov: np.ndarray | None = None,
        spacing: Sequence[float] | None = None,
        extras: dict[str, Any] | None = None,
        normalise: bool = True,
    ) -> Case:
        """Build a :class:`Case` from raw arrays: rescale, z-score inside the FOV, pick the annotator.

        Args:
            image: ``(C, *spatial)`` raw intensities.
            labels: ``{annotator: (*spatial) int64}``, in ``annotators`` order (at least one).
            fov: ``(*spatial)`` bool, or None (statistics then use every voxel).
            spacing: voxel size per axis (default 1.0).
            extras: further per-case data (kept as is).
            normalise: z-score the image (per channel, statistics inside the FOV).
        """
        spacing = tuple(float(s) for s in (spacing or (1.0,) * self.spatial_dims))
        if self.scale != 1.0:
            image, labels, fov, spacing = rescale_case(image, labels, fov, spacing, self.scale)
        if normalise:
            image = zscore(image, fov)
        used, label = self._pick_label(labels)
        extra = {f"label_{k}": v for k, v in labels.items()}
        extra["annotator"] = used
        extra.update(extras or {})
        return Case(case_id, image.astype(np.float32), label, fov, spacing, extra)

    def _pick_label(self, labels: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
        names = list(labels)
        if self.annotator == CONSENSUS:
            if len(names) == 1:
                return names[0], labels[names[0]]
            return CONSENSUS, combine_annotators([labels[n] for n in names], self.num_classes)
        if self.annotator in labels:
            return self.annotator, labels[self.annotator]
        return names[0], labels[names[0]]

    # ---- shared logic --------------------------------------------------------------------
    def case(self, case_id: str) -> Case:
        """Load (once) and return the case ``case_id``."""
        if case_id not in self._cache:
            self._cache[case_id] = self.load_case(self._refs[case_id])
        return self._cache[case_id]

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.prepare_data()
        refs = self.list_cases()
        if not refs:
            hint = (
                f" Download: {', '.join(r.url for r in self.resources)} (download=True)."
                if self.resources
                else ""
            )
            raise FileNotFoundError(
                f"{self.name}: no cases found under {self.root}.{hint} {self.download_note}".rstrip()
            )
        self._refs = {r.case_id: r for r in refs}
        self.splits = load_or_make_split(
            refs,
            name=self.name,
            cache_dir=self.cache_dir,
            fold=self.fold,
            num_folds=self.num_folds,
            split_seed=self.split_seed,
            val_fraction=self.val_fraction,
            fixed_val_split=self.fixed_val_split,
        )
        if self.limit_cases is not None:
            self.splits = {k: v[: self.limit_cases] for k, v in self.splits.items()}

    def split_info(self) -> dict[str, Any]:
        """What goes into a run record: the case ids per split and how they were chosen."""
        return {
            "fold": self.fold,
            "num_folds": self.num_folds,
            "split_seed": self.split_seed,
            "fixed_val_split": self.fixed_val_split,
            "split_note": self.describe_split(),
            "annotator": self.annotator,
            "limit_cases": self.limit_cases,
            "skipped": dict(self.skipped),
            **{k: list(v) for k, v in self.splits.items()},
        }

    def good_case_ids(self, split: str) -> list[str]:
        """Case ids of ``split`` that load; bad ones are skipped with a warning (see ``on_bad_case``)."""
        good, bad = [], {}
        for cid in self.splits[split]:
            if cid in self.skipped:
                continue
            try:
                self.case(cid)
                good.append(cid)
            except CaseLoadError as e:
                if self.on_bad_case == "raise":
                    raise
                bad[cid] = str(e)
        if bad:
            self.skipped.update(bad)
            listing = "; ".join(f"{k}: {v}" for k, v in bad.items())
            warnings.warn(f"{self.name}: skipped {len(bad)} bad case(s) in {split}: {listing}", stacklevel=2)
        return good

    def _dataset(self, split: str) -> Dataset:
        return CaseDataset(self, self.good_case_ids(split))

    def train_dataloader(self) -> DataLoader:
        cases = [self.case(c) for c in self.good_case_ids("train")]
        if not cases:
            raise RuntimeError(f"{self.name}: no loadable training cases (skipped: {self.skipped})")
        ds = PatchSampler(
            cases,
            patch_size=self.patch_size,
            samples_per_epoch=self.samples_per_epoch,
            fg_oversample=self.fg_oversample,
            transform=build_augmentation(self.augment, self.spatial_dims),
        )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=len(ds) >= self.batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("val"), batch_size=1, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("test"), batch_size=1, num_workers=self.num_workers)
