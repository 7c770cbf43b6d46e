"""VEVIO: vessels in video indirect ophthalmoscopy (Estrada et al., Biomed. Opt. Express 2012).

16 neonatal eyes (``neoNNod1``), each as a video frame (``_d``, 640x480) and as a mosaic
(``_m``, sizes vary). Layout::

    frames/neoNNod1_d.png     frames_manual_01_bw/bw_neoNNod1_d_black.png   frames_masks/mask_neoNNod1_d.png
    mosaics/neoNNod1_m.png    mosaics_manual_01_bw/bw_neoNNod1_m_black.png  mosaics_masks/mask_neoNNod1_m.png

Vessel = 255 in the labels. Gotcha: 6 frame FOV masks are not binary (grey levels), read
thresholded at 128. ``subset`` picks ``frames`` (default), ``mosaics`` or ``both`` (the frame
and the mosaic of one eye then stay in the same fold). No official split (seeded).
"""

from __future__ import annotations

import os
from typing import Any

from datamodules.args import one_of
from datamodules.base import CaseRef, SegDataModule
from datamodules.registry import register_dataset

_SUBSETS = {"frames": ("frames",), "mosaics": ("mosaics",), "both": ("frames", "mosaics")}


@register_dataset("vevio")
class VevioDataModule(SegDataModule):
    """VEVIO: 16 video-ophthalmoscopy frames (or mosaics) with vessel labels and FOV masks.

    Args:
        subset: ``"frames"``, ``"mosaics"`` or ``"both"``.
    """

    task = "retinal vessels, 2D video indirect ophthalmoscopy (neonatal)"
    spatial_dims = 2
    in_channels = 3
    license = "not stated; cite Estrada et al. 2012"
    default_patch_size = (128, 128)
    folder = "VEVIO"
    num_cases = 16
    annotators = ("01",)
    extra_arg_checks = {"subset": one_of(tuple(_SUBSETS))}
    download_note = "Request VEVIO from the Farsiu lab (http://people.duke.edu/~sf59/); unpack it into root."

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, subset: str = "frames", **kwargs: Any
    ) -> None:
        self._check_args({"subset": subset})
        self.subset = subset
        super().__init__(root, **kwargs)

    def list_cases(self) -> list[CaseRef]:
        refs = []
        for sub in _SUBSETS[self.subset]:
            for img in self.find_files(f"{sub}/neo*.png"):
                base = img.parent.parent
                labels = {
                    who: base / f"{sub}_manual_{who}_bw" / f"bw_{img.stem}_black.png"
                    for who in self.annotators
                    if (base / f"{sub}_manual_{who}_bw" / f"bw_{img.stem}_black.png").is_file()
                }
                if labels:
                    fov = base / f"{sub}_masks" / f"mask_{img.stem}.png"
                    info = {"image": img, "labels": labels, "fov": fov, "group": img.stem.rsplit("_", 1)[0]}
                    refs.append(CaseRef(img.stem, None, info))
        return refs
