"""Medical Segmentation Decathlon tasks (Simpson et al. 2019; Antonelli et al., Nat. Commun. 2022).

Release ``TaskNN_Name.tar``: ``imagesTr/*.nii.gz``, ``labelsTr/*.nii.gz``, ``imagesTs/`` (no
labels), ``dataset.json``. URLs and md5 digests are those MONAI's ``DecathlonDataset`` uses.

Each task is a declaration (classes, patch size, release, intensity window) over the MSD reader
of :class:`datamodules.generic.VolumeDataModule`, the one ``nnunet_raw`` uses:

- The index comes from ``dataset.json`` ("training") when present, else from pairing
  ``imagesTr`` and ``labelsTr`` by file name; macOS ``._*`` files in the tars are ignored. An
  image without its label (or a label without its image) is a case that fails to load, naming
  the missing file (``on_bad_case``).
- Images are read as stored (no reorientation unless ``orientation`` is set), channels first for
  multi-modal tasks; voxel spacing from the NIfTI header is kept (``Case.spacing``).
- Image dtypes are mixed (float32 / uint8) and some labels are float (0., 1., 2.): labels are
  cast to int64 after checking they hold whole numbers in ``0..num_classes-1``.
- Intensities: optional clip to ``intensity_window`` (CT), then z-score over the volume; the
  ``intensity`` option (``zscore``, ``ct``) replaces this rule (``docs/preprocessing.md``).
- Optional preprocessing (``spacing``, ``orientation``): cases are resampled / reoriented and the
  test metrics are computed after mapping the prediction back to the file's grid.
- The test images have no public labels: seeded k-fold over ``imagesTr``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np

from datamodules.download import Resource
from datamodules.generic import DatasetFileError, VolumeDataModule
from datamodules.registry import register_dataset

__all__ = ["DatasetFileError", "MsdDataModule"]

_MSD_URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/"


def _window(cls: type, v: Any, args: Any) -> str | None:
    if v is None:
        return None
    ok = (
        not isinstance(v, str) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v) and v[0] < v[1]
    )
    if not ok:
        return f"must be None or [low, high] with low < high, got {v!r}"
    if args.get("intensity") is not None:
        return f"cannot be combined with intensity={args['intensity']!r} (which sets the intensities itself)"
    return None


def _msd_resource(task: str, md5: str) -> tuple[Resource, ...]:
    return (Resource(f"{_MSD_URL}{task}.tar", f"{task}.tar", f"md5:{md5}"),)


class MsdDataModule(VolumeDataModule):
    """A Decathlon task; subclasses declare the task, classes and window.

    Args:
        intensity_window: clip range applied before the z-score (None: the task's default window,
            if any); not together with ``intensity`` (``zscore`` and ``ct`` use no window).
        spacing, orientation, intensity: preprocessing (:class:`VolumeDataModule`,
            ``docs/preprocessing.md``).
    """

    spatial_dims = 3
    license = "CC BY-SA 4.0; cite Simpson et al. 2019 and Antonelli et al. 2022"
    layout = "msd"
    spec_hint = "; fix or delete it (the cases are then paired from imagesTr/ and labelsTr/)"
    msd_task: ClassVar[str] = ""
    default_window: ClassVar[tuple[float, float] | None] = None
    extra_arg_checks = {**VolumeDataModule.extra_arg_checks, "intensity_window": _window}

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        intensity_window: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> None:
        self._check_args({"intensity_window": intensity_window, "intensity": kwargs.get("intensity")})
        super().__init__(root, **kwargs)
        self.intensity_window = tuple(intensity_window) if intensity_window else self.default_window

    def adjust_intensities(self, image: np.ndarray) -> np.ndarray:
        """Clip to ``intensity_window`` when there is one."""
        return image if self.intensity_window is None else np.clip(image, *self.intensity_window)


@register_dataset("msd_hippocampus")
class MsdHippocampusDataModule(MsdDataModule):
    """MSD Task04: left/right hippocampus (anterior, posterior) in cropped T1 MRI, 260 cases."""

    task = "hippocampus head and body, 3D MRI (MSD Task04)"
    class_names = ("background", "anterior", "posterior")
    channel_names = ("MRI",)  # dataset.json "modality"
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
    channel_names = ("CT",)  # dataset.json "modality"
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
    channel_names = ("CT",)  # dataset.json "modality"
    num_classes = 2
    default_patch_size = (96, 96, 96)
    folder = "MSD_Task09_Spleen"
    num_cases = 41
    msd_task = "Task09_Spleen"
    default_window = (-57.0, 164.0)
    resources = _msd_resource(msd_task, "410d4a301da4e5b2f6f86ec3ddba524e")
