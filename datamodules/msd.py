"""Medical Segmentation Decathlon tasks (Simpson et al. 2019; Antonelli et al., Nat. Commun. 2022).

Release ``TaskNN_Name.tar``: ``imagesTr/*.nii.gz``, ``labelsTr/*.nii.gz``, ``imagesTs/`` (no
labels), ``dataset.json``. URLs and md5 digests are those MONAI's ``DecathlonDataset`` uses.

- The index comes from ``dataset.json`` ("training") when present, else from pairing
  ``imagesTr`` and ``labelsTr`` by file name; macOS ``._*`` files in the tars are ignored and
  images without a label are left out.
- Images are read as stored (no reorientation), channels first for multi-modal tasks; voxel
  spacing from the NIfTI header is kept (``Case.spacing``).
- Image dtypes are mixed (float32 / uint8) and some labels are float (0., 1., 2.): labels are
  cast to int64 after checking they hold whole numbers in ``0..num_classes-1``.
- Intensities: optional clip to ``intensity_window`` (CT), then z-score over the volume.
- The test images have no public labels: seeded k-fold over ``imagesTr``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datamodules.base import Case, CaseRef, SegDataModule
from datamodules.download import Resource
from datamodules.readers import check_same_shape, integer_label, read_nifti
from datamodules.registry import register_dataset

_MSD_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/"
_NIFTI = ".nii.gz"


def _window(cls: type, v: Any, args: Any) -> str | None:
    if v is None:
        return None
    ok = (
        not isinstance(v, str) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v) and v[0] < v[1]
    )
    return None if ok else f"must be None or [low, high] with low < high, got {v!r}"


def _msd_resource(task: str, md5: str) -> tuple[Resource, ...]:
    return (Resource(f"{_MSD_URL}{task}.tar", f"{task}.tar", f"md5:{md5}"),)


class DatasetFileError(ValueError):
    """A dataset's own index file is unreadable; the message names it."""


class MsdDataModule(SegDataModule):
    """Shared reader of Decathlon tasks; subclasses declare the task, classes and window.

    Args:
        intensity_window: clip range applied before the z-score (None: no clipping).
    """

    spatial_dims = 3
    license = "CC BY-SA 4.0; cite Simpson et al. 2019 and Antonelli et al. 2022"
    annotators = ("manual",)
    msd_task: ClassVar[str] = ""
    default_window: ClassVar[tuple[float, float] | None] = None
    extra_arg_checks = {"intensity_window": _window}

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        intensity_window: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> None:
        self._check_args({"intensity_window": intensity_window})
        super().__init__(root, **kwargs)
        self.intensity_window = tuple(intensity_window) if intensity_window else self.default_window

    def _pairs(self) -> list[tuple[Path, Path]]:
        """(image, label) paths from ``dataset.json`` when present, else paired by file name."""
        spec = self.find_files("dataset.json")
        if spec:
            base = spec[0].parent
            try:
                entries = json.loads(spec[0].read_text()).get("training", [])
                return [(base / e["image"], base / e["label"]) for e in entries]
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError) as e:
                raise DatasetFileError(
                    f"{spec[0]}: not a valid MSD dataset.json ({type(e).__name__}: {e}); "
                    "fix or delete it (the cases are then paired from imagesTr/ and labelsTr/)"
                ) from None
        return [
            (img, img.parent.parent / "labelsTr" / img.name)
            for img in self.find_files(f"imagesTr/*{_NIFTI}")
            if not img.name.startswith("._")
        ]

    def list_cases(self) -> list[CaseRef]:
        refs, unpaired = [], []
        for img, lab in self._pairs():
            if not img.is_file() or not lab.is_file():
                unpaired.append(img.name)
                continue
            refs.append(CaseRef(img.name.removesuffix(_NIFTI), None, {"image": img, "label": lab}))
        if unpaired:
            warnings.warn(f"{self.name}: left out {len(unpaired)} unpaired case(s): {unpaired}", stacklevel=2)
        return refs

    def load_case(self, ref: CaseRef) -> Case:
        data, spacing = read_nifti(ref.info["image"])
        image = np.moveaxis(data, -1, 0) if data.ndim == 4 else data[None]  # (X, Y, Z, C)
        image = image.astype(np.float32)
        raw, _ = read_nifti(ref.info["label"])
        label = integer_label(raw, ref.info["label"], self.num_classes)
        check_same_shape(image.shape[1:], label, ref.info["label"])
        if self.intensity_window is not None:
            image = np.clip(image, *self.intensity_window)
        return self.make_case(ref.case_id, image, {"manual": label}, spacing=spacing)


@register_dataset("msd_hippocampus")
class MsdHippocampusDataModule(MsdDataModule):
    """MSD Task04: left/right hippocampus (anterior, posterior) in cropped T1 MRI, 260 cases."""

    task = "hippocampus head and body, 3D MRI (MSD Task04)"
    class_names = ("background", "anterior", "posterior")
    num_classes = 3
    default_patch_size = (32, 32, 32)
    folder = "MSD_Task04_Hippocampus"
    num_cases = 260
    msd_task = "Task04_Hippocampus"
    resources = _msd_resource(msd_task, "9d24dba78a72977dbd1d2e110310f31b")


@register_dataset("msd_hepatic_vessel")
class MsdHepaticVesselDataModule(MsdDataModule):
    """MSD Task08: hepatic vessels and liver tumours in portal-venous CT, 303 cases."""

    task = "hepatic vessels and tumours, 3D CT (MSD Task08)"
    class_names = ("background", "vessel", "tumour")
    num_classes = 3
    default_patch_size = (96, 96, 96)
    folder = "MSD_Task08_HepaticVessel"
    num_cases = 303
    msd_task = "Task08_HepaticVessel"
    resources = _msd_resource(msd_task, "641d79e80ec66453921d997fbf12a29c")


@register_dataset("msd_spleen")
class MsdSpleenDataModule(MsdDataModule):
    """MSD Task09: spleen in portal-venous CT, 41 cases; window (-57, 164) HU (MONAI spleen tutorial)."""

    task = "spleen, 3D CT (MSD Task09)"
    class_names = ("background", "spleen")
    num_classes = 2
    default_patch_size = (96, 96, 96)
    folder = "MSD_Task09_Spleen"
    num_cases = 41
    msd_task = "Task09_Spleen"
    default_window = (-57.0, 164.0)
    resources = _msd_resource(msd_task, "410d4a301da4e5b2f6f86ec3ddba524e")
