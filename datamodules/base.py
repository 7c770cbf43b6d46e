"""Shared DataModule logic: index -> split (saved once, :mod:`datamodules.splits`) -> patch
sampling -> loaders.

A dataset subclasses :class:`SegDataModule` and *declares* what differs: class attributes
(``task``, ``spatial_dims``, ``in_channels``, ``channel_names``, ``num_classes``,
``class_names``, ``license``, ``default_patch_size``, ``folder``, ``num_cases``, ``resources``,
``annotators``) plus ``list_cases`` (the index, with the official split where there is one) and,
unless the file-table default fits, ``load_case`` (read one case from its release format). A
dataset declared by its files (``nnunet_raw``, ``image_folder``: :mod:`datamodules.generic`)
reads those class attributes from ``root``: :meth:`SegDataModule.for_root` gives the class that
holds them, and the runner plans with it (:func:`datamodules.registry.dataset_class`).

The file-table default: ``list_cases`` puts the paths of a 2D case in ``CaseRef.info``
(``image``, ``labels`` = ``{annotator: path}``, optional ``fov``) and the base reads them with
:mod:`datamodules.readers`. Every reader path ends in :meth:`SegDataModule.make_case`, which
rescales (``scale``), z-scores the image inside the FOV, keeps every annotator as
``extras["label_<name>"]`` and picks ``label`` by ``annotator``.

Splits (:mod:`datamodules.splits`): an official test split is kept; a dataset without one has
``test_fraction`` of its cases held out as test (seeded by ``split_seed``, the same for every
fold) before the rest is folded into train/val, so the test cases are never used for selection.

Bad cases: ``load_case`` raises :class:`~datamodules.readers.CaseLoadError` (a ``ValueError``
naming the file) for an unreadable or truncated file, an image/label size mismatch or label
values outside the expected set. :meth:`SegDataModule.setup` loads every case of every split
once and applies ``on_bad_case`` (default: the dataset's ``on_bad_case_default``): ``"skip"``
leaves the case out with one warning per split listing every skipped case and why, and
``split_info()["skipped"]`` records them; ``"raise"`` stops with the error.

The disk cache (:mod:`datamodules.diskcache`, docs/cache.md): ``setup`` writes every case it
decodes as ``.npy`` files under ``<cache_dir>/cases/<key>/`` (``key``: the case's files and
:meth:`SegDataModule.cache_settings`), and :meth:`SegDataModule.case` and the training patches read
them back as memory maps, so the dataset is not held in RAM. ``disk_cache=False`` (or
``$SEGBENCH_NO_DISK_CACHE=1``) keeps every case in RAM instead; batches are identical either way.

Label budgets and weak labels (docs/datasets.md, "Label budgets and scribbles"):
``labelled_fraction < 1`` keeps the labels of a seeded subset of the training cases
(:func:`datamodules.splits.labelled_subset`); the others are read with
:meth:`~datamodules.cases.CaseReadingMixin.load_unlabelled` (image only, never a label file),
cached under their own key, and feed ``image_u`` in the training items. ``train_labels="scribble"``
trains on simulated scribbles (:mod:`datamodules.scribbles`) of the labelled training cases.

Arguments are checked when the DataModule is built (:mod:`datamodules.args`, errors are
:class:`~datamodules.args.DataArgumentError` naming the argument);
:meth:`SegDataModule.check_kwargs` runs the same checks on a kwargs dict without building
anything or touching the disk.

Batches:
- train: ``image (B, in_channels, *patch)`` float32, ``label (B, 1, *patch)`` int64 (with
  ``train_labels="scribble"``: in ``{0..num_classes-1, 255}``, 255 = no scribble); with
  ``multi_rater=True`` also ``label_<rater> (B, 1, *patch)`` int64 (same crop) for each rater
  that every training case has; with unlabelled training cases also
  ``image_u (B, in_channels, *patch)`` float32 (a patch of an unlabelled case);
- val/test (one whole case): ``image (1, in_channels, *spatial)``, ``label (1, 1, *spatial)``,
  ``label_<rater> (1, 1, *spatial)`` int64 for every rater the case has,
  ``fov (1, 1, *spatial)`` bool when the dataset has field-of-view masks, ``case_id``,
  ``spacing``.
"""

from __future__ import annotations

import functools
import inspect
import os
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L

from datamodules.args import (
    BAD_CASE_POLICIES,
    CONSENSUS,
    ArgCheck,
    DataArgumentError,
    accepted_kwargs,
    check_args,
)
from datamodules.cases import Case, CaseReadingMixin, CaseRef
from datamodules.diskcache import (
    META,
    CachedCases,
    CaseStore,
    case_key,
    default_cache_dir,
    digest,
    disk_cache_disabled,
    file_stamps,
    module_digest,
    package_digest,
    read_entry,
    source_files,
)
from datamodules.download import Resource, fetch_resources
from datamodules.loaders import RatersAndLoadersMixin
from datamodules.readers import CaseLoadError
from datamodules.splits import (
    Split,
    labelled_subset,
    labelled_subset_file,
    load_or_make_split,
    write_labelled_subset,
)

__all__ = [
    "BAD_CASE_POLICIES",
    "CONSENSUS",
    "DATA_ENV",
    "DatasetNotFoundError",
    "Case",
    "CaseRef",
    "SegDataModule",
    "data_folder",
]

DATA_ENV = ("SEGBENCH_DATA", "SEGBENCH_SHARED_DATA")
"""Environment variables naming the folder that holds the datasets' release folders (``DRIVE/``,
``HRF/`` ...), first set one wins. ``SEGBENCH_SHARED_DATA`` is what the test suite sets."""


_NOT_SETTINGS = (types.FunctionType, classmethod, staticmethod, property, functools.cached_property)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's release is not where its root says and cannot be fetched (names the folder)."""


LOADER_ONLY_ARGS = frozenset(
    {
        "download",
        "batch_size",
        "patch_size",
        "samples_per_epoch",
        "fg_oversample",
        "augment",
        "fold",
        "num_folds",
        "split_seed",
        "seed",
        "num_workers",
        "cache_dir",
        "limit_cases",
        "on_bad_case",
        "multi_rater",
        "disk_cache",
        "labelled_fraction",
        "train_labels",
    }
)
"""Constructor arguments that change only the split, the sampling or the loaders, never what
``load_case`` returns: left out of the disk cache's key (every other argument is in it)."""


def _recording_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` that first records its arguments (defaults filled in, ``**kwargs`` spread) in
    ``self._init_args``: the disk cache's key reads a subclass's own arguments from there."""
    sig = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError:
            return init(self, *args, **kwargs)  # the constructor's own error
        bound.apply_defaults()
        given = self.__dict__.setdefault("_init_args", {})
        for name, value in list(bound.arguments.items())[1:]:
            kind = sig.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                given.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                given[name] = value
        return init(self, *args, **kwargs)

    return wrapper


def data_folder() -> Path:
    """The folder of release folders: the first of :data:`DATA_ENV` that is set, else
    ``~/.cache/segbench/data``. Runs, ``segbench datasets`` and the checks read it alike."""
    for name in DATA_ENV:
        if os.environ.get(name):
            return Path(os.environ[name])
    return Path.home() / ".cache" / "segbench" / "data"


class SegDataModule(CaseReadingMixin, RatersAndLoadersMixin, L.LightningDataModule):
    """Base DataModule. Subclasses implement :meth:`list_cases` (and :meth:`load_case` unless
    the file-table default fits).

    Args:
        root: folder holding (or receiving) the release files; default :meth:`default_root`
            (``<data folder>/<folder>``, :func:`data_folder`: ``$SEGBENCH_DATA``,
            ``$SEGBENCH_SHARED_DATA`` or ``~/.cache/segbench/data``).
        download: fetch the release (``resources``) when ``root`` lacks it.
        batch_size: training batch size (val/test use one whole case per batch).
        patch_size: training patch / inference window; defaults to ``default_patch_size``.
        samples_per_epoch: number of random patches that make one training epoch.
        fg_oversample: probability that a patch is centred on a foreground voxel (nnU-Net: 0.33).
        augment: MONAI augmentation probabilities, e.g. ``{"flip": 0.5, "rot90": 0.5}``.
        fold: k-fold index over the non-test cases (ignored with a fixed validation split).
        num_folds: number of folds; ``1`` keeps ``val_fraction`` of the training pool aside.
        split_seed: seed of the split: the held-out test set and the folds (recorded with the run).
        seed: the run's seed; training patches and augmentations are drawn from
            ``(seed, epoch, index)``, new every epoch, the same for the same seed.
        num_workers: DataLoader workers (results do not depend on it).
        cache_dir: where split files and the case cache are written (default ``$SEGBENCH_CACHE``
            or ``~/.cache/segbench``), since ``root`` may be read-only.
        annotator: which annotator becomes ``label``: None = the first of ``annotators``, a
            name from ``annotators``, or ``"consensus"`` (strict majority vote of the
            annotators a case has; for two annotators that is their intersection). A case
            lacking the named annotator (DRIVE training images have no 2nd observer) falls back
            to the first one; ``Case.extras["annotator"]`` says which was used.
        scale: resize factor applied to every case on load (``0.5`` halves each axis; images
            linear with anti-aliasing, labels/FOV nearest; spacing is divided by it).
        limit_cases: keep at most this many cases per split (smoke runs); the split file is
            unchanged and ``split_info()`` lists the cases actually used.
        on_bad_case: ``"skip"`` (warn, listing every skipped case and why) or ``"raise"``;
            None takes the dataset's ``on_bad_case_default``.
        multi_rater: training patches also carry ``label_<rater>`` for each rater every training
            case has (val/test batches always carry every rater a case has).
        disk_cache: keep loaded cases as memory-mapped ``.npy`` files under
            ``<cache_dir>/cases`` (:mod:`datamodules.diskcache`, docs/cache.md) instead of in RAM;
            ``$SEGBENCH_NO_DISK_CACHE=1`` turns it off too. Results do not depend on it.
        labelled_fraction: in ``(0, 1]``: the share of the training cases whose labels are used
            (:func:`datamodules.splits.labelled_subset`, seeded by ``seed`` and ``split_seed``);
            the rest are read without labels (:meth:`load_unlabelled`) and give ``image_u``.
        train_labels: ``"dense"`` (the labels as released) or ``"scribble"``: the labelled
            training cases train on simulated scribbles (:mod:`datamodules.scribbles`), 255 elsewhere;
            validation and test labels are unchanged.

    Raises:
        DataArgumentError: an invalid argument (a ``ValueError`` naming it), see :meth:`check_kwargs`.
    """

    name: ClassVar[str] = ""
    task: ClassVar[str] = ""
    spatial_dims: ClassVar[int] = 2
    in_channels: ClassVar[int] = 1
    # what each input channel is (modality: "CT", "T2" ...; "R", "G", "B"); empty when not declared
    channel_names: ClassVar[tuple[str, ...]] = ()
    num_classes: ClassVar[int] = 2
    class_names: ClassVar[tuple[str, ...]] = ("background", "foreground")
    license: ClassVar[str] = ""
    default_patch_size: ClassVar[tuple[int, ...]] = (128, 128)
    fixed_val_split: ClassVar[bool] = False
    val_fraction: ClassVar[float] = 0.2
    # fraction of the cases held out as test when the index has no official test cases
    test_fraction: ClassVar[float] = 0.2
    on_bad_case_default: ClassVar[str] = "skip"
    # checks of a subclass's own constructor arguments: {name: (cls, value, args) -> problem | None}
    extra_arg_checks: ClassVar[dict[str, ArgCheck]] = {}
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
        seed: int = 0,
        num_workers: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        annotator: str | None = None,
        scale: float = 1.0,
        limit_cases: int | None = None,
        on_bad_case: str | None = None,
        multi_rater: bool = False,
        disk_cache: bool = True,
        labelled_fraction: float = 1.0,
        train_labels: str = "dense",
    ) -> None:
        super().__init__()
        given = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        args = {k: v for k, v in given.items() if k not in ("root", "cache_dir")}
        self._check_args(args)
        self.__dict__.setdefault("_init_args", {}).update(given)
        self.root = Path(root) if root is not None else self.default_root()
        self.download = download
        self.batch_size = batch_size
        self.patch_size = tuple(patch_size or self.default_patch_size)
        self.samples_per_epoch = samples_per_epoch
        self.fg_oversample = float(fg_oversample)
        self.augment = dict(augment or {})
        self.fold = fold
        self.num_folds = num_folds
        self.split_seed = split_seed
        self.seed = seed
        self.num_workers = num_workers
        self.cache_dir = Path(cache_dir or default_cache_dir())
        self.annotator = annotator
        self.scale = scale
        self.limit_cases = limit_cases
        self.on_bad_case = on_bad_case or self.on_bad_case_default
        self.multi_rater = multi_rater
        self.labelled_fraction = float(labelled_fraction)
        self.train_labels = train_labels
        self.labelled: list[str] = []  # training ids whose labels are used (after setup)
        self.unlabelled: frozenset[str] = frozenset()  # training ids read without labels (after setup)
        self.labelled_file: Path | None = None
        self._scribbles: dict[str, Any] = {}  # case id -> its training scribble, computed once
        self.splits: dict[str, list[str]] = {}
        self.split: Split | None = None
        self.skipped: dict[str, str] = {}
        self._refs: dict[str, CaseRef] = {}
        self.disk_cache = disk_cache and not disk_cache_disabled()
        self._cache: dict[str, Case] = {}  # without the disk cache: every loaded case, in RAM
        self._entries: dict[str, Path] = {}  # with it: case id -> its entry folder
        self._store = CaseStore(self.cache_dir)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Record the constructor arguments of every subclass (:meth:`cache_settings` reads them)."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _recording_arguments(init)  # type: ignore[method-assign]

    @classmethod
    def _check_args(cls, args: Mapping[str, Any]) -> None:
        """Check the given constructor arguments (:func:`datamodules.args.check_args`)."""
        check_args(cls, args)
        if "disk_cache" in args and not isinstance(args["disk_cache"], bool):
            raise DataArgumentError(
                f"{cls.name or cls.__name__}: disk_cache must be true or false, got {args['disk_cache']!r}"
            )

    @classmethod
    def check_kwargs(cls, kwargs: Mapping[str, Any]) -> None:
        """Validate DataModule keyword arguments without building the DataModule or touching the disk.

        Meant to be called before a run starts (e.g. on every dataset entry of a sweep). Checks,
        in order: every key is a constructor argument of ``cls`` (or a base class); then every
        value, with the constructor's defaults filled in: ``batch_size >= 1``,
        ``samples_per_epoch >= 1``, ``patch_size`` None or ``spatial_dims`` integers ``>= 1``,
        ``0 <= fg_oversample <= 1``, ``num_folds >= 1``, ``fold`` in ``0..num_folds-1``,
        ``num_workers >= 0``, ``annotator`` None / one of ``annotators`` / ``"consensus"``,
        ``augment`` keys known with probabilities in ``[0, 1]``, ``scale > 0``,
        ``limit_cases`` None or ``>= 1``, ``on_bad_case`` None / ``"skip"`` / ``"raise"``,
        ``disk_cache`` a bool, ``labelled_fraction`` in ``(0, 1]``, ``train_labels`` ``"dense"`` /
        ``"scribble"``, and the dataset's own arguments (``extra_arg_checks``).

        Args:
            kwargs: what would be passed to the constructor (``root`` included or not).

        Raises:
            DataArgumentError: a ``ValueError`` naming the first bad field (an unknown one is
                named with the list of accepted arguments).
        """
        accepted = accepted_kwargs(cls)
        unknown = [k for k in kwargs if k not in accepted]
        if unknown:
            who = cls.name or cls.__name__
            raise DataArgumentError(
                f"{who}: unknown argument {unknown[0]!r}; accepted: {', '.join(accepted)}"
            )
        cls._check_args({**accepted, **kwargs})

    # ---- where the data is -------------------------------------------------------------
    @classmethod
    def default_root(cls) -> Path | None:
        """``<data folder>/<folder>`` (:func:`data_folder`); None without a folder (embedded data)."""
        if not cls.folder:
            return None
        return data_folder() / cls.folder

    @classmethod
    def for_root(cls, root: str | os.PathLike[str] | None = None) -> type[SegDataModule]:
        """The class that describes the dataset at ``root`` (its ``spatial_dims``, ``in_channels``,
        ``num_classes``, ``class_names``, ``default_patch_size`` ...): ``cls`` itself for a dataset
        declared in Python; a dataset declared by its files (:mod:`datamodules.generic`) returns the
        subclass that holds what the files say. The runner reads these through
        :func:`datamodules.registry.dataset_class`."""
        return cls

    @classmethod
    def is_present(cls, root: str | os.PathLike[str] | None = None) -> bool:
        """True when ``root`` (default :meth:`default_root`) holds at least one readable case index entry."""
        try:
            return bool(cls(root=root).list_cases())
        except (OSError, ValueError):
            return False

    @classmethod
    def check_available(cls, root: str | os.PathLike[str] | None = None, *, download: bool = False) -> None:
        """Fail before anything trains when a run could not get its data.

        Cheap: lists the case index (file names), reads no image. Fine when the data is embedded,
        present in ``root`` (default :meth:`default_root`), its release files lie in ``root`` ready
        to be verified and extracted, or ``download`` may fetch every one of them.

        Raises:
            DataArgumentError: naming the dataset and the folder, with how to get the data.
        """
        if not cls.folder:
            return
        where = Path(root) if root is not None else cls.default_root()
        if where is None:
            return
        try:
            if cls(root=where).list_cases():
                return
        except OSError:
            pass
        except ValueError as e:  # a file of the release that cannot be read names itself
            raise DataArgumentError(f"{cls.name}: {e}") from None
        if where.is_dir() and any((where / r.filename).is_file() for r in cls.resources):
            return
        if download and cls.resources and not any(r.manual for r in cls.resources):
            return
        how = (
            "set `download: true` in its dataset entry, or "
            if cls.resources and not any(r.manual for r in cls.resources)
            else ""
        )
        state = "does not exist" if not where.exists() else "holds none of its cases"
        raise DataArgumentError(
            f"{cls.name}: root {where} {state}; {how}point `root:` at the release folder "
            f"(default root: $SEGBENCH_DATA/{cls.folder}). {cls.download_note}".rstrip()
        )

    @classmethod
    def case_groups(cls, case_ids: Sequence[str]) -> dict[str, str]:
        """The independent unit of each case (subject, patient, eye pair) when cases cluster.

        The leaderboard averages the cases of a group before it forms intervals and paired tests
        (docs/leaderboard.md, "Clusters"). Default: no groups (every case is its own unit).

        Args:
            case_ids: test case ids as the records name them.

        Returns:
            ``case id -> group`` for the cases that belong to a group (others are left out).
        """
        return {}

    @classmethod
    def case_metadata(
        cls, case_ids: Sequence[str], root: str | os.PathLike[str] | None = None
    ) -> dict[str, dict[str, str]]:
        """Per-case metadata for subgroup analysis (``segbench leaderboard --by KEY``).

        Default: the rows of ``case_metadata.csv`` in ``root`` (default :meth:`default_root`) for
        ``case_ids`` (:func:`datamodules.metadata.read_case_metadata`); datasets whose release states
        groups (HRF, CHASE_DB1) override it.

        Returns:
            ``case id -> {key: value}`` for the cases that have metadata (others are left out).
        """
        from datamodules.metadata import read_case_metadata

        where = Path(root) if root is not None else cls.default_root()
        return read_case_metadata(where, case_ids) if where is not None else {}

    @classmethod
    def describe_split(cls) -> str:
        """How the split is made: ``split_note`` or the generic rule."""
        if cls.split_note:
            return cls.split_note
        if cls.fixed_val_split:
            return "fixed train/val/test split"
        return (
            f"seeded held-out test set ({cls.test_fraction:.0%} of the cases, the same for every fold), "
            "seeded k-fold over the rest"
        )

    @classmethod
    def dataset_info(cls, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """What ``segbench datasets`` prints: task, dims, case count, licence, presence, URLs."""
        where = Path(root) if root is not None else cls.default_root()
        return {
            "name": cls.name,
            "task": cls.task,
            "spatial_dims": cls.spatial_dims,
            "in_channels": cls.in_channels,
            "channel_names": list(cls.channel_names),
            "num_classes": cls.num_classes,
            "class_names": list(cls.class_names),
            "num_cases": cls.num_cases,
            "annotators": list(cls.annotators),
            "split": cls.describe_split(),
            "license": cls.license,
            "root": str(where) if where is not None else None,
            "present": cls.is_present(where),
            "urls": list(dict.fromkeys(r.url for r in cls.resources)),
            "download_note": cls.download_note,
        }

    def prepare_data(self) -> None:
        """Make the release in ``root`` readable: use release files placed there, download the rest.

        When ``root`` holds no readable case, every declared release file (``resources``) found
        in ``root`` is verified (checksum, or trusted and recorded on first use) and extracted,
        with no network access; with ``download`` the missing ones are fetched first. Nothing
        in ``root`` is ever deleted or overwritten (:mod:`datamodules.download`).

        Raises:
            FileNotFoundError: ``download`` is set but a release file cannot be fetched
                automatically (registration, request) and is not in ``root``.
        """
        if self.root is None or self.is_present(self.root):
            return
        if self.download and not self.resources:
            raise DatasetNotFoundError(
                f"{self.name}: no cases under {self.root} and no automatic download. {self.download_note}"
            )
        missing = fetch_resources(self.resources, self.root, download=self.download)
        if self.download and missing:
            names = ", ".join(r.filename for r in missing)
            raise DatasetNotFoundError(
                f"{self.name}: {names} cannot be downloaded automatically; put it in {self.root}. "
                f"{self.download_note}".rstrip()
            )

    def find_files(self, pattern: str) -> list[Path]:
        """Sorted files matching ``pattern`` under ``root`` or one wrapping folder (as archives add)."""
        if self.root is None or not self.root.is_dir():
            return []
        return sorted(self.root.glob(pattern)) or sorted(self.root.glob(f"*/{pattern}"))

    # ---- what a dataset declares (and load_case, from CaseReadingMixin) -----------------
    def list_cases(self) -> list[CaseRef]:
        """The dataset's index, with the official split in ``CaseRef.split`` where one exists."""
        raise NotImplementedError

    # ---- the disk cache's key (datamodules.diskcache) -------------------------------------
    def cache_settings(self) -> dict[str, Any]:
        """Everything besides the case's own files that changes what :meth:`load_case` returns.

        - ``class``: the dataset's class and its declared class attributes (a dataset declared by
          its files: what they declare), an instance attribute of the same name taking precedence
          (``raw_intensities``);
        - ``code``: a digest of the source of the ``datamodules`` package and of any module outside
          it that defines the class or a base (a changed reader, a new segbench version: the
          cases are decoded again);
        - ``args``: every constructor argument of the class and its bases except
          :data:`LOADER_ONLY_ARGS`, found generically: a dataset's new argument is in the key
          without being listed anywhere. An instance attribute of the same name (the resolved
          value, e.g. ``root``) takes precedence over the value given.

        A dataset whose ``load_case`` also depends on something else (statistics of the training
        split, a setting changed after construction under another name) adds it here.
        """
        klasses = [k for k in type(self).__mro__ if issubclass(k, SegDataModule) or k is CaseReadingMixin]
        attrs = {}
        for klass in klasses:
            for name in vars(klass):
                value = inspect.getattr_static(type(self), name)
                if name.startswith("_") or name in attrs or isinstance(value, _NOT_SETTINGS):
                    continue
                attrs[name] = self.__dict__.get(name, value)
        outside = sorted({k.__module__ for k in klasses if k.__module__.split(".")[0] != "datamodules"})
        given = self.__dict__.get("_init_args", {})
        args = {k: self.__dict__.get(k, v) for k, v in given.items() if k not in LOADER_ONLY_ARGS}
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "attrs": attrs,
            "code": {"datamodules": package_digest(), **{m: module_digest(m) for m in outside}},
            "args": args,
        }

    def case_files(self, ref: CaseRef) -> list[Path]:
        """The files ``load_case(ref)`` reads (their path, size and mtime are in the case's key).

        Default: every existing file named in ``ref.info``. A dataset whose ``load_case`` reads
        files its index entry does not name overrides it."""
        return source_files(ref.info)

    def case_key(self, ref: CaseRef, *, unlabelled: bool = False) -> str:
        """The disk cache's entry name of ``ref`` under the current settings (:meth:`cache_settings`).

        ``unlabelled``: the key of the case read by :meth:`load_unlabelled`, a different entry, so a
        label-less case is never read as a labelled one or the other way round."""
        source: dict[str, Any] = {"info": ref.info, "files": file_stamps(self.case_files(ref))}
        if unlabelled:
            source["unlabelled"] = True
        return case_key(self.name or type(self).__name__, digest(self.cache_settings()), ref.case_id, source)

    # ---- shared logic --------------------------------------------------------------------
    def case_ref(self, case_id: str) -> CaseRef | None:
        """The index entry of ``case_id`` (after :meth:`setup`; None for an unknown id): the files
        it names, e.g. a volume's ``label`` file."""
        return self._refs.get(case_id)

    def case(self, case_id: str) -> Case:
        """The case ``case_id`` as :meth:`load_case` returned it.

        With the disk cache (default): read from its entry, written on first use; the image, FOV
        and float extras are copy-on-write memory maps, ``label`` and integer extras copies in
        their own dtype (int64), so nothing stays in RAM after the caller drops it. Without it:
        loaded once and kept in RAM.
        """
        if not self.disk_cache:
            if case_id not in self._cache:
                self._cache[case_id] = self._load(self._refs[case_id])
            return self._cache[case_id]
        return read_entry(self._entry(case_id))

    def _load(self, ref: CaseRef) -> Case:
        """:meth:`load_case`, or :meth:`load_unlabelled` for a training case outside the label budget.

        Raises:
            DataArgumentError: the dataset cannot read a case without its labels.
        """
        if ref.case_id not in self.unlabelled:
            return self.load_case(ref)
        try:
            return self.load_unlabelled(ref)
        except NotImplementedError:
            raise self._no_unlabelled() from None

    def _no_unlabelled(self) -> DataArgumentError:
        return DataArgumentError(
            f"{self.name or type(self).__name__}: labelled_fraction={self.labelled_fraction:g} needs "
            f"load_unlabelled (reading a case without its labels), which {type(self).__name__} lacks"
        )

    def _entry(self, case_id: str) -> Path:
        """The cache entry of ``case_id``, decoded and written when missing.

        Raises:
            CaseLoadError: the case cannot be read (bad cases never get an entry).
        """
        folder = self._entries.get(case_id)
        if folder is None or not (folder / META).is_file():
            ref = self._refs[case_id]
            key = self.case_key(ref, unlabelled=case_id in self.unlabelled)
            folder = self._store.find(key) or self._store.put(key, self._load(ref))
            self._entries[case_id] = folder
        return folder

    def training_cases(self, case_ids: Sequence[str]) -> Sequence[Case]:
        """The cases the training patches are cut from: lazily opened cache entries
        (:class:`~datamodules.diskcache.CachedCases`, memory maps, labels as stored), or the
        in-RAM cases without the disk cache."""
        if not self.disk_cache:
            return [self.case(c) for c in case_ids]
        return CachedCases([self._entry(c) for c in case_ids])

    def setup(self, stage: str | None = None) -> None:
        """Index the release, load or make the split, and load every case of every split once:
        into the disk cache (only the cases it lacks are decoded), or into RAM without it.

        Bad cases are skipped (listed in ``split_info()["skipped"]``) or raised, per ``on_bad_case``.
        """
        if self.splits:
            return
        self.prepare_data()
        refs = self.list_cases()
        if not refs:
            files = ", ".join(r.filename for r in self.resources)
            hint = f" Put the release files ({files}) in it, or pass download=True." if files else ""
            raise DatasetNotFoundError(
                f"{self.name}: no cases found under {self.root}.{hint} {self.download_note}".rstrip()
            )
        self._refs = {r.case_id: r for r in refs}
        self.split = load_or_make_split(
            refs,
            name=self.name,
            cache_dir=self.cache_dir,
            fold=self.fold,
            num_folds=self.num_folds,
            split_seed=self.split_seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            fixed_val_split=self.fixed_val_split,
        )
        self.splits = {"train": self.split.train, "val": self.split.val, "test": self.split.test}
        if self.limit_cases is not None:
            self.splits = {k: v[: self.limit_cases] for k, v in self.splits.items()}
        self._choose_labelled()
        for split in self.splits:
            self.good_case_ids(split)

    def _choose_labelled(self) -> None:
        """Draw the labelled training cases (:func:`~datamodules.splits.labelled_subset`), record
        them next to the split file when some are left unlabelled, and check that the dataset can
        read a case without its labels."""
        labelled, unlabelled = labelled_subset(
            self.splits["train"], self.labelled_fraction, self.seed, self.split_seed
        )
        self.labelled = labelled
        self.unlabelled = frozenset(unlabelled)
        if not unlabelled:
            return
        if not self.reads_unlabelled():
            raise self._no_unlabelled()
        path = labelled_subset_file(
            self.split.file if self.split else None,
            self.cache_dir,
            self.name or type(self).__name__,
            self.labelled_fraction,
            self.seed,
        )
        write_labelled_subset(path, labelled, sorted(unlabelled))
        self.labelled_file = path

    def split_info(self) -> dict[str, Any]:
        """What goes into a run record: the case ids per split, how they were chosen, what was skipped.

        Keys: ``fold``, ``num_folds``, ``split_seed``, ``fixed_val_split``, ``split_note``,
        ``test_source`` (``"official"`` or ``"held_out"``), ``test_fraction`` (None when
        official), ``split_file``, ``annotator``, ``raters``, ``limit_cases``, ``on_bad_case``,
        ``skipped`` (``{case_id: reason}``), ``spatial_dims``, ``in_channels``,
        ``channel_names``, ``class_names`` (what the data held: a dataset declared by its files
        states them here), ``train``, ``val``, ``test`` (the case ids used, skipped ones included),
        ``labelled_fraction``, ``train_labels``, ``labelled`` / ``unlabelled`` (sorted training ids
        with / without labels), ``n_labelled``, ``n_unlabelled``, ``labelled_file`` (where the subset
        is written; None when every training case is labelled).
        """
        split = self.split
        return {
            "fold": self.fold,
            "num_folds": self.num_folds,
            "split_seed": self.split_seed,
            "fixed_val_split": self.fixed_val_split,
            "split_note": self.describe_split(),
            "test_source": split.test_source if split else None,
            "test_fraction": split.test_fraction if split else None,
            "split_file": str(split.file) if split and split.file else None,
            "annotator": self.annotator,
            "raters": self.rater_names(),
            "limit_cases": self.limit_cases,
            "on_bad_case": self.on_bad_case,
            "skipped": dict(self.skipped),
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "channel_names": list(self.channel_names),
            "class_names": list(self.class_names),
            **{k: list(v) for k, v in self.splits.items()},
            "labelled_fraction": self.labelled_fraction,
            "train_labels": self.train_labels,
            "labelled": list(self.labelled),
            "unlabelled": sorted(self.unlabelled),
            "n_labelled": len(self.labelled),
            "n_unlabelled": len(self.unlabelled),
            "labelled_file": str(self.labelled_file) if self.labelled_file else None,
        }

    def good_case_ids(self, split: str) -> list[str]:
        """Case ids of ``split`` that load; bad ones are skipped with a warning (see ``on_bad_case``)."""
        good, bad = [], {}
        for cid in self.splits[split]:
            if cid in self.skipped:
                continue
            try:
                if self.disk_cache:
                    self._entry(cid)
                else:
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
