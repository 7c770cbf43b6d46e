"""STARE retinal vessels (Hoover, Kouznetsova, Goldbaum, IEEE TMI 2000).

Release: ``stare-images.tar`` (``imNNNN.ppm.gz``, 700x605 RGB), ``labels-ah.tar``
(``imNNNN.ah.ppm.gz``, Adam Hoover) and ``labels-vk.tar`` (``imNNNN.vk.ppm.gz``, Valentina
Kouznetsova) from https://cecas.clemson.edu/~ahoover/stare/probing/. Every ``.ppm.gz`` below
``root`` is found, whatever folder the tars were unpacked into; the 20 images with at least
one labelling are the cases. ``ah`` is the usual ground truth, ``vk`` the human baseline.

No FOV masks are released (derived from the red channel) and there is no official split.
"""

from __future__ import annotations

import re

from datamodules.base import CaseRef, SegDataModule
from datamodules.download import Resource
from datamodules.registry import register_dataset

_URL = "https://cecas.clemson.edu/~ahoover/stare/probing/"
_NAME = re.compile(r"^(im\d{4})(?:\.(ah|vk))?\.ppm\.gz$")


@register_dataset("stare")
class StareDataModule(SegDataModule):
    """STARE: 20 labelled fundus images, annotators ``ah`` and ``vk``, derived FOV."""

    task = "retinal vessels, 2D colour fundus"
    spatial_dims = 2
    in_channels = 3
    license = "terms not stated on the release page; cite Hoover et al. 2000"
    default_patch_size = (128, 128)
    folder = "STARE"
    num_cases = 20
    annotators = ("ah", "vk")
    derive_missing_fov = True
    resources = tuple(
        Resource(_URL + name, name, extract_to=name.removesuffix(".tar"))
        for name in ("stare-images.tar", "labels-ah.tar", "labels-vk.tar")
    )

    def list_cases(self) -> list[CaseRef]:
        if self.root is None or not self.root.is_dir():
            return []
        images, labels = {}, {}
        for path in sorted(self.root.rglob("im*.ppm.gz")):
            m = _NAME.match(path.name)
            if m and m.group(2):
                labels.setdefault(m.group(1), {})[m.group(2)] = path
            elif m:
                images[m.group(1)] = path
        return [
            CaseRef(cid, None, {"image": images[cid], "labels": dict(sorted(labs.items()))})
            for cid, labs in sorted(labels.items())
            if cid in images
        ]
