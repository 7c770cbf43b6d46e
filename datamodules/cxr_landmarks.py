"""Chest X-ray landmark segmentation dataset (Gaggion et al., IEEE TMI 2022; HybridGNet, MICCAI 2021).

911 contour-landmark sets of lungs, heart and clavicles on JSRT, Montgomery, Shenzhen and
Padchest radiographs. Layout::

    landmarks/{RL,LL,H,RCLA,LCLA}/<ID>.npy   (N, 2) pixel (x, y) in the preprocessed 1024x1024 frame
    Images/<ID>.png                          1024x1024 8-bit grey (fetched from each source dataset)
    HybridGNet_JSRT_splits/{train,val,test}_files.txt   (optional; ids written as <ID>.IMG)

Point counts: right lung 44, left lung 50, heart 26, clavicles 23 each (JSRT: all 166 points).
The landmark repository ships no images: a case is an id with an image and every organ in
``organs``. Dense labels are the closed contours filled in the order RL, LL, H, RCLA, LCLA (a
later organ overwrites an earlier one where they overlap). Batches also carry ``landmarks
(B, N, 2)``: normalised ``(x, y)`` in ``[0, 1]``, organs concatenated in ``organs`` order.

Gotchas: landmark dtype is float64 in some files and float32 in others; only JSRT has
clavicles and only JSRT/Padchest the heart. Spatial augmentations (flip, rot90) are dropped with
a warning because they would move the image but not the landmarks.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from skimage.draw import polygon

from datamodules.base import Case, CaseRef, SegDataModule
from datamodules.download import Resource
from datamodules.readers import CaseLoadError, read_image_2d
from datamodules.registry import register_dataset

ORGANS = ("RL", "LL", "H", "RCLA", "LCLA")
_SPATIAL_AUGMENTS = {"flip", "rot90", "rotate_scale"}


def _organs(cls: type, v: Any, args: Any) -> str | None:
    ok = not isinstance(v, str) and bool(v) and all(o in ORGANS for o in v)
    return None if ok else f"must be a non-empty subset of {ORGANS}, got {v!r}"


_SPLIT_FILES = {"train": "train_files.txt", "val": "val_files.txt", "test": "test_files.txt"}


@register_dataset("cxr_landmarks")
class CxrLandmarksDataModule(SegDataModule):
    """Chest X-ray lungs / heart / clavicles from landmark contours, rasterised to masks.

    Args:
        organs: which landmark sets to use (subset of ``RL, LL, H, RCLA, LCLA``); class ids stay
            fixed (``class_names``), absent organs are simply never labelled.
        scale: resize factor of the 1024x1024 images (default 0.25: 256x256, the patch size).
    """

    task = "lungs, heart and clavicles from contour landmarks, 2D chest X-ray"
    spatial_dims = 2
    in_channels = 1
    num_classes = 6
    class_names = ("background", "right_lung", "left_lung", "heart", "right_clavicle", "left_clavicle")
    license = "landmarks: no licence file (cite Gaggion et al. 2022); images: JSRT/SCR, NLM, Padchest terms"
    default_patch_size = (256, 256)
    folder = "CXR_Landmarks"
    num_cases = 911
    annotators = ("landmarks",)
    image_mode = "L"
    batch_extras = ("landmarks",)
    extra_arg_checks = {"organs": _organs}
    split_note = (
        "HybridGNet JSRT lists where present (train+val pooled for k-fold, test official); "
        "other ids seeded k-fold; without any official test id, 20% held out as test"
    )
    resources = (
        Resource(
            "https://github.com/ngaggion/Chest-xray-landmark-dataset/archive/"
            "2169d894f141dbea01bff1bd9d0ef8ea686fee9c.zip",
            "Chest-xray-landmark-dataset.zip",
        ),
    )
    download_note = (
        "Images are not in the landmark repository: fetch them from JSRT, Montgomery/Shenzhen (NLM) "
        "and Padchest, preprocess to 1024x1024 8-bit PNG as HybridGNet does, and put them in Images/<ID>.png."
    )

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        organs: Sequence[str] = ORGANS,
        scale: float = 0.25,
        **kwargs: Any,
    ) -> None:
        self._check_args({"organs": organs})
        self.organs = tuple(o for o in ORGANS if o in organs)
        super().__init__(root, scale=scale, **kwargs)
        spatial = sorted(_SPATIAL_AUGMENTS & {k for k, p in self.augment.items() if p > 0})
        if spatial:
            warnings.warn(
                f"cxr_landmarks: dropped augmentations {spatial}: they would desynchronise the landmarks",
                stacklevel=2,
            )
            self.augment = {k: p for k, p in self.augment.items() if k not in _SPATIAL_AUGMENTS}

    def _official_split(self) -> dict[str, str]:
        split = {}
        for name, fname in _SPLIT_FILES.items():
            for path in self.find_files(f"HybridGNet_JSRT_splits/{fname}"):
                for line in path.read_text().split():
                    split[line.rsplit(".", 1)[0]] = name
        return split

    def list_cases(self) -> list[CaseRef]:
        official = self._official_split()
        refs = []
        for img in self.find_files("Images/*.png"):
            base = img.parent.parent
            marks = {o: base / "landmarks" / o / f"{img.stem}.npy" for o in self.organs}
            if all(p.is_file() for p in marks.values()):
                refs.append(CaseRef(img.stem, official.get(img.stem), {"image": img, "landmarks": marks}))
        return refs

    def load_case(self, ref: CaseRef) -> Case:
        image = read_image_2d(ref.info["image"], "L")
        h, w = image.shape[1:]
        label = np.zeros((h, w), dtype=np.int64)
        points = []
        for organ, path in ref.info["landmarks"].items():
            try:
                xy = np.load(path).astype(np.float64)
            except (OSError, ValueError) as e:
                raise CaseLoadError(f"{path}: cannot read landmarks ({e})") from e
            if xy.ndim != 2 or xy.shape[1] != 2:  # (x, y)
                raise CaseLoadError(f"{path}: landmarks must be (N, 2), got {xy.shape}")
            if xy.min() < 0 or xy[:, 0].max() > w or xy[:, 1].max() > h:
                raise CaseLoadError(f"{path}: landmarks fall outside the {w}x{h} image {ref.info['image']}")
            rr, cc = polygon(xy[:, 1], xy[:, 0], shape=(h, w))
            label[rr, cc] = ORGANS.index(organ) + 1
            points.append(xy / np.array([w, h]))
        landmarks = np.concatenate(points).astype(np.float32)
        return self.make_case(ref.case_id, image, {"landmarks": label}, extras={"landmarks": landmarks})
