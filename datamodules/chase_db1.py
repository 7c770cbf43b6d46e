"""CHASE_DB1 retinal vessels (Fraz et al., IEEE TBME 2012; Owen et al., IOVS 2009).

Release (``CHASEDB1.zip``, one flat folder): ``Image_NN{L,R}.jpg`` (999x960 RGB) with
``Image_NN{L,R}_1stHO.png`` and ``_2ndHO.png`` (1-bit PNG, mode ``1``) from two observers.

There are no FOV masks in the release: ``Case.fov`` is derived from the red channel
(:func:`datamodules.readers.derive_fov`). There is no official split; the common convention,
used here, puts subjects 01-10 (20 images) in training and 11-14 (8 images) in test, so both
eyes of a child stay in the same split; the validation folds also keep a child's eyes together.

Per-case metadata (:meth:`ChaseDb1DataModule.case_metadata`, ``segbench leaderboard --by eye``):
``eye`` (``left`` / ``right`` from ``Image_NNL`` / ``Image_NNR``) and ``age_group`` (``child``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from datamodules.base import CaseRef, SegDataModule
from datamodules.download import Resource
from datamodules.registry import register_dataset

_LAST_TRAIN_SUBJECT = 10
_IMAGE_ID = re.compile(r"Image_(\d\d)([LR])")
_EYE = {"L": "left", "R": "right"}


@register_dataset("chase_db1")
class ChaseDb1DataModule(SegDataModule):
    """CHASE_DB1: 28 child fundus images, two annotators, derived FOV."""

    task = "retinal vessels, 2D colour fundus (children)"
    spatial_dims = 2
    in_channels = 3
    license = "public research dataset, licence not stated; cite Fraz et al. 2012"
    default_patch_size = (128, 128)
    folder = "CHASE_DB1"
    num_cases = 28
    annotators = ("1st", "2nd")
    derive_missing_fov = True
    split_note = "convention: subjects 01-10 train (20 images) / 11-14 test (8); FOV derived (none released)"
    resources = (Resource("https://researchdata.kingston.ac.uk/96/1/CHASEDB1.zip", "CHASEDB1.zip"),)

    def list_cases(self) -> list[CaseRef]:
        refs = []
        for img in self.find_files("Image_[0-9][0-9][LR].jpg"):
            labels = {
                who: img.with_name(f"{img.stem}_{who}HO.png")
                for who in self.annotators
                if img.with_name(f"{img.stem}_{who}HO.png").is_file()
            }
            if labels:
                subject = int(img.stem[6:8])
                split = "train" if subject <= _LAST_TRAIN_SUBJECT else "test"
                info = {"image": img, "labels": labels, "group": f"subject_{subject:02d}"}
                refs.append(CaseRef(img.stem, split, info))
        return refs

    @classmethod
    def case_groups(cls, case_ids: Sequence[str]) -> dict[str, str]:
        """Both eyes of a child form one unit: ``Image_11L`` and ``Image_11R`` -> ``child 11``."""
        out = {}
        for cid in case_ids:
            m = _IMAGE_ID.fullmatch(cid)
            if m:
                out[cid] = f"child {m.group(1)}"
        return out

    @classmethod
    def case_metadata(
        cls, case_ids: Sequence[str], root: str | os.PathLike[str] | None = None
    ) -> dict[str, dict[str, str]]:
        """``eye`` (``left`` / ``right``, from ``Image_NNL`` / ``Image_NNR``) and ``age_group``
        (``child``: every subject is a child of the school cohort) of each case named as the release
        names its images (ids of another form get none).

        Keys of a ``case_metadata.csv`` in ``root`` are added (:meth:`SegDataModule.case_metadata`);
        the keys the name states win over columns of the same name.
        """
        out = super().case_metadata(case_ids, root)
        for cid in case_ids:
            m = _IMAGE_ID.fullmatch(cid)
            if m:
                out[cid] = {**out.get(cid, {}), "eye": _EYE[m.group(2)], "age_group": "child"}
        return out
