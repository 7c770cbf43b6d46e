"""One case of a dataset: the index entry (:class:`CaseRef`), the loaded arrays (:class:`Case`), and
the shared reading logic of :class:`~datamodules.base.SegDataModule` (:class:`CaseReadingMixin`).

The file-table default: ``list_cases`` puts the paths of a 2D case in ``CaseRef.info``
(``image``, ``labels`` = ``{annotator: path}``, optional ``fov``, ``invert_label``) and
:meth:`CaseReadingMixin.load_case` reads them with :mod:`datamodules.readers`. Every reader path
ends in :meth:`CaseReadingMixin.make_case`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datamodules.args import CONSENSUS
from datamodules.readers import (
    check_same_shape,
    combine_annotators,
    derive_fov,
    read_binary_label,
    read_fov,
    read_image_2d,
    rescale_case,
    zscore,
)


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


@dataclass
class RawCase:
    """One case as its files hold it, before any normalisation (what the fingerprint reads).

    Attributes:
        image: ``(C, *spatial)`` float32 intensities as stored.
        label: ``(*spatial)`` int64 in ``[0, num_classes)``.
        spacing: voxel size per spatial axis, or None (unknown: 1.0).
        affine: ``(4, 4)`` voxel -> RAS+ world (mm) for volume formats, else None.
    """

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None


class CaseReadingMixin:
    """Reading one case; needs the DataModule's ``image_mode``, ``derive_missing_fov``,
    ``spatial_dims``, ``scale``, ``annotator`` and ``num_classes``.

    ``raw_intensities = True`` (set on an instance) makes :meth:`make_case` keep the intensities as
    read, without the z-score: :mod:`datamodules.fingerprint` reads datasets that way.
    """

    raw_intensities: bool = False

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

    def load_unlabelled(self, ref: CaseRef) -> Case:
        """Read one case without its labels (a training case outside the label budget): the image
        and FOV exactly as :meth:`load_case` makes them, never a label file. The default reads the
        file table in ``ref.info`` (``image``, optional ``fov``, ``derive_missing_fov``).

        A dataset that overrides :meth:`load_case` overrides this too (:meth:`reads_unlabelled`).

        Returns:
            :meth:`make_unlabelled_case`: ``label`` all zeros, ``extras["unlabelled"] = True``.

        Raises:
            NotImplementedError: the case is not a file table.
            CaseLoadError: unreadable image or FOV file, or a size mismatch (names the file).
        """
        info = ref.info
        if "image" not in info:
            raise NotImplementedError(f"{type(self).__name__} must implement load_unlabelled")
        image = read_image_2d(info["image"], self.image_mode)
        fov = None
        if info.get("fov"):
            fov = read_fov(info["fov"])
            check_same_shape(image.shape[1:], fov, info["fov"])
        elif self.derive_missing_fov:
            fov = derive_fov(image)
        return self.make_unlabelled_case(ref.case_id, image, fov=fov)

    def reads_unlabelled(self) -> bool:
        """True when :meth:`load_unlabelled` belongs to this dataset's :meth:`load_case`: it is
        defined in the class that defines ``load_case`` or in a subclass of it. A dataset that
        overrides ``load_case`` alone reads its cases its own way, which the inherited
        ``load_unlabelled`` does not know."""
        mro = type(self).__mro__

        def owner(name: str) -> type:
            return next(k for k in mro if name in vars(k))

        return issubclass(owner("load_unlabelled"), owner("load_case"))

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
        if normalise and not self.raw_intensities:
            image = zscore(image, fov)
        used, label = self._pick_label(labels)
        extra = {f"label_{k}": v for k, v in labels.items()}
        extra["annotator"] = used
        extra.update(extras or {})
        return Case(case_id, image.astype(np.float32), label, fov, spacing, extra)

    def make_unlabelled_case(
        self,
        case_id: str,
        image: np.ndarray,
        *,
        fov: np.ndarray | None = None,
        spacing: Sequence[float] | None = None,
        extras: dict[str, Any] | None = None,
        normalise: bool = True,
    ) -> Case:
        """:meth:`make_case` of a case whose labels are not read: the same image (rescaled, z-scored
        inside the FOV), ``label (*spatial)`` int64 all zeros, no ``label_<name>`` / ``annotator``
        extras, ``extras["unlabelled"] = True``."""
        zeros = np.zeros(image.shape[1:], dtype=np.int64)
        case = self.make_case(
            case_id, image, {"none": zeros}, fov=fov, spacing=spacing, extras=extras, normalise=normalise
        )
        kept = {k: v for k, v in case.extras.items() if not k.startswith("label_") and k != "annotator"}
        kept["unlabelled"] = True
        label = np.zeros(case.image.shape[1:], dtype=np.int64)
        return Case(case_id, case.image, label, case.fov, case.spacing, kept)

    def _pick_label(self, labels: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
        names = list(labels)
        if self.annotator == CONSENSUS:
            if len(names) == 1:
                return names[0], labels[names[0]]
            return CONSENSUS, combine_annotators([labels[n] for n in names], self.num_classes)
        if self.annotator in labels:
            return self.annotator, labels[self.annotator]
        return names[0], labels[names[0]]
