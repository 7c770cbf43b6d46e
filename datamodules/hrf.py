"""HRF: High-Resolution Fundus image database (Budai et al., Int. J. Biomed. Imaging 2013).

45 images (15 healthy ``_h``, 15 glaucoma ``_g``, 15 diabetic retinopathy ``_dr``),
3504x2336 JPEG, one manual vessel segmentation each (TIFF {0, 255}) and FOV masks. Two release
layouts are read:

- ``all.zip``: ``images/NN_x.jpg``, ``manual1/NN_x.tif``, ``mask/NN_x_mask.tif``;
- per-category zips: ``{healthy,glaucoma,diabetic_retinopathy}/NN_x.jpg``,
  ``<category>_manualsegm/NN_x.tif``, ``<category>_fovmask/NN_x_mask.tif``.

Gotchas: the FOV masks are RGB TIFFs (read as grey); images are 8 Mpx, so ``scale=0.5`` (or
less) is common and keeps memory down. No official split (seeded).

Per-case metadata (:meth:`HrfDataModule.case_metadata`, ``segbench leaderboard --by condition``):
``condition`` from the image name (``healthy``, ``glaucoma``, ``diabetic_retinopathy``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from datamodules.base import CaseRef, SegDataModule
from datamodules.download import Resource
from datamodules.registry import register_dataset

_CATEGORIES = ("healthy", "glaucoma", "diabetic_retinopathy")
_IMAGE_SUFFIXES = {".jpg", ".jpeg"}
_CONDITION = {"h": "healthy", "g": "glaucoma", "dr": "diabetic_retinopathy"}
"""The suffix of an image name (``NN_h``, ``NN_g``, ``NN_dr``) -> the subject's condition."""


@register_dataset("hrf")
class HrfDataModule(SegDataModule):
    """HRF: 45 high-resolution fundus images (healthy / glaucoma / DR) with FOV masks."""

    task = "retinal vessels, 2D high-resolution colour fundus"
    spatial_dims = 2
    in_channels = 3
    license = "free for research (not verified); cite Budai et al. 2013"
    default_patch_size = (256, 256)
    folder = "HRF"
    num_cases = 45
    annotators = ("manual",)
    resources = (
        Resource(
            "https://www5.cs.fau.de/fileadmin/research/datasets/fundus-images/all.zip",
            "all.zip",
            # published by no official page; the same digest appears in two independent loaders
            "sha256:a914d02cda161b7f33f25d0397c276d50e9a6cbc705e9b364a54f0adafed57e4",
        ),
    )

    def list_cases(self) -> list[CaseRef]:
        layouts = [("images", "manual1", "mask")]
        layouts += [(c, f"{c}_manualsegm", f"{c}_fovmask") for c in _CATEGORIES]
        refs = {}
        for img_dir, lab_dir, fov_dir in layouts:
            for img in self.find_files(f"{img_dir}/*"):
                if img.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                base = img.parent.parent
                label = base / lab_dir / f"{img.stem}.tif"
                if label.is_file():
                    fov = base / fov_dir / f"{img.stem}_mask.tif"
                    info = {
                        "image": img,
                        "labels": {"manual": label},
                        "fov": fov,
                        "category": img.stem.split("_")[-1],
                    }
                    refs[img.stem] = CaseRef(img.stem, None, info)
        return [refs[k] for k in sorted(refs)]

    @classmethod
    def case_metadata(
        cls, case_ids: Sequence[str], root: str | os.PathLike[str] | None = None
    ) -> dict[str, dict[str, str]]:
        """``condition`` of each case from its name, as the release names its images: ``NN_h``
        healthy, ``NN_g`` glaucoma, ``NN_dr`` diabetic_retinopathy (ids of another form get none).

        Keys of a ``case_metadata.csv`` in ``root`` are added (:meth:`SegDataModule.case_metadata`);
        the condition the name states wins over a ``condition`` column.
        """
        out = super().case_metadata(case_ids, root)
        for cid in case_ids:
            stem, sep, suffix = cid.rpartition("_")
            if sep and stem.isdigit() and suffix in _CONDITION:
                out[cid] = {**out.get(cid, {}), "condition": _CONDITION[suffix]}
        return out
