"""ISBI 2012 EM segmentation challenge: neuronal membranes (Arganda-Carreras et al. 2015).

Serial-section TEM of the Drosophila larva ventral nerve cord (Cardona et al. 2010), 30
training slices of 512x512. Two layouts are read:

- the official release: multi-page TIFF stacks ``train-volume.tif`` and ``train-labels.tif``;
- one PNG per slice: ``train/image/N.png`` and ``train/label/N.png`` (as in zhixuhao/unet).

Gotcha: in the labels 0 (black) is membrane and 255 is cell interior; the label is inverted so
that the foreground (class 1) is the membrane. The test stack has no public labels and is not
indexed. Each slice is a case; there is no official split (seeded; neighbouring slices are
correlated).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from datamodules.base import Case, CaseRef, SegDataModule
from datamodules.download import Resource
from datamodules.readers import CaseLoadError, binary_label, check_same_shape, read_stack
from datamodules.registry import register_dataset

_URL = "http://brainiac2.mit.edu/isbi_challenge/sites/default/files/"


@functools.lru_cache(maxsize=2)
def _stack(path: Path) -> np.ndarray:
    return read_stack(path)


@register_dataset("isbi2012_em")
class Isbi2012EmDataModule(SegDataModule):
    """ISBI 2012 EM membranes: 30 grey 512x512 slices, foreground = membrane."""

    task = "neuronal membranes, 2D electron microscopy"
    spatial_dims = 2
    in_channels = 1
    class_names = ("background", "membrane")
    license = "challenge data, terms not stated; cite Cardona et al. 2010 and Arganda-Carreras et al. 2015"
    default_patch_size = (128, 128)
    folder = "ISBI2012_EM_membrane"
    num_cases = 30
    annotators = ("manual",)
    image_mode = "L"
    resources = tuple(
        Resource(_URL + n, n, extract_to=None) for n in ("train-volume.tif", "train-labels.tif")
    )

    def list_cases(self) -> list[CaseRef]:
        volume, labels = self.find_files("train-volume.tif"), self.find_files("train-labels.tif")
        if volume and labels:
            n = len(_stack(volume[0]))
            info = {"stack": volume[0], "label_stack": labels[0]}
            return [CaseRef(f"slice_{i:02d}", None, {**info, "index": i}) for i in range(n)]
        refs = []
        for img in self.find_files("train/image/*.png"):
            label = img.parent.parent / "label" / img.name
            if img.stem.isdigit() and label.is_file():
                info = {"image": img, "labels": {"manual": label}, "invert_label": True}
                refs.append(CaseRef(f"slice_{int(img.stem):02d}", None, info))
        return sorted(refs, key=lambda r: r.case_id)

    def load_case(self, ref: CaseRef) -> Case:
        if "stack" not in ref.info:
            return super().load_case(ref)
        i, lab_path = ref.info["index"], ref.info["label_stack"]
        image = _stack(ref.info["stack"])[i].astype(np.float32)[None]
        labels = _stack(lab_path)
        if i >= len(labels):
            raise CaseLoadError(f"{lab_path}: has {len(labels)} pages, slice {i} is missing")
        label = binary_label(labels[i], f"{lab_path}[page {i}]", invert=True)
        check_same_shape(image.shape[1:], label, f"{lab_path}[page {i}]")
        return self.make_case(ref.case_id, image, {"manual": label})
