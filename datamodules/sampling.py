"""Training patches (random crops, foreground oversampling as in nnU-Net, MONAI augmentation) and
whole-case validation / test items."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from torch.utils.data import Dataset, get_worker_info

if TYPE_CHECKING:
    from datamodules.base import Case, SegDataModule

_KEYS = ["image", "label"]

AUGMENTATIONS: dict[str, Callable[[float, int], list[Any]]] = {
    "flip": lambda p, dims: [RandFlipd(_KEYS, prob=p, spatial_axis=a) for a in range(dims)],
    "rot90": lambda p, dims: [RandRotate90d(_KEYS, prob=p, spatial_axes=(dims - 2, dims - 1))],
    "noise": lambda p, dims: [RandGaussianNoised(["image"], prob=p, std=0.1)],
    "scale_intensity": lambda p, dims: [RandScaleIntensityd(["image"], factors=0.2, prob=p)],
    "shift_intensity": lambda p, dims: [RandShiftIntensityd(["image"], offsets=0.2, prob=p)],
}


def build_augmentation(augment: dict[str, float], spatial_dims: int) -> Compose | None:
    """MONAI ``Compose`` from ``{name: probability}``; names are the keys of ``AUGMENTATIONS``."""
    unknown = sorted(set(augment) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; known: {sorted(AUGMENTATIONS)}")
    transforms = [t for name, p in augment.items() if p > 0 for t in AUGMENTATIONS[name](p, spatial_dims)]
    return Compose(transforms) if transforms else None


def crop_box(
    shape: Sequence[int], patch: Sequence[int], rng: np.random.Generator, center: Sequence[int] | None
) -> tuple[slice, ...]:
    """A patch-sized box inside ``shape`` (after padding), random or around ``center``."""
    starts = []
    for n, p, c in zip(shape, patch, center if center is not None else [None] * len(shape), strict=True):
        hi = max(n - p, 0)
        s = int(rng.integers(0, hi + 1)) if c is None else int(np.clip(c - p // 2, 0, hi))
        starts.append(s)
    return tuple(slice(s, s + p) for s, p in zip(starts, patch, strict=True))


class PatchSampler(Dataset):
    """``samples_per_epoch`` random patches from the training cases.

    With probability ``fg_oversample`` a patch is centred on a random foreground voxel, otherwise
    placed uniformly; cases smaller than the patch are zero-padded (label 0).

    A case with ``extras["landmarks"]`` (``(N, 2)`` normalised ``(x, y)`` in the whole image)
    also yields ``landmarks (N, 2)`` normalised to the patch (``[0, 1]`` when the patch covers the
    image; spatial augmentation is not applied to them).
    """

    def __init__(
        self,
        cases: list[Case],
        *,
        patch_size: Sequence[int],
        samples_per_epoch: int,
        fg_oversample: float = 0.33,
        transform: Compose | None = None,
        seed: int | None = None,
    ) -> None:
        self.cases = cases
        self.patch = tuple(patch_size)
        self.n = samples_per_epoch
        self.fg_oversample = fg_oversample
        self.transform = transform
        self.seed = seed
        self._fg = [np.argwhere(c.label > 0) for c in cases]

    def __len__(self) -> int:
        return self.n

    def _rng(self, i: int) -> np.random.Generator:
        base = torch.initial_seed() if self.seed is None else self.seed
        info = get_worker_info()
        return np.random.default_rng([base % 2**32, i, info.id if info else 0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = self._rng(i)
        k = int(rng.integers(len(self.cases)))
        case, fg = self.cases[k], self._fg[k]
        image, label = _pad_to(case.image, case.label, self.patch)
        center = None
        if len(fg) and rng.random() < self.fg_oversample:
            offset = [(p - n) // 2 if p > n else 0 for n, p in zip(case.label.shape, self.patch, strict=True)]
            center = fg[int(rng.integers(len(fg)))] + np.array(offset)
        box = crop_box(label.shape, self.patch, rng, center)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image[(slice(None), *box)], dtype=np.float32)),
            "label": torch.from_numpy(np.ascontiguousarray(label[box], dtype=np.int64))[None],
        }
        landmarks = case.extras.get("landmarks")
        if self.transform is not None:
            self.transform.set_random_state(seed=int(rng.integers(2**31)))
            item = self.transform(item)
            item = {k: torch.as_tensor(np.asarray(v)).contiguous() for k, v in item.items()}
            item["label"] = item["label"].long()
        if landmarks is not None:
            item["landmarks"] = _landmarks_in_patch(landmarks, case.label.shape, label.shape, box)
        return item


def _landmarks_in_patch(
    landmarks: np.ndarray, shape: Sequence[int], padded: Sequence[int], box: tuple[slice, ...]
) -> torch.Tensor:
    """``(N, 2)`` normalised ``(x, y)`` of the image ``shape (H, W)`` -> normalised to the patch ``box``."""
    h, w = shape
    pad_y, pad_x = ((p - n) // 2 for n, p in zip(shape, padded, strict=True))
    xy = np.asarray(landmarks, dtype=np.float64) * np.array([w, h]) + np.array([pad_x, pad_y])
    origin = np.array([box[1].start, box[0].start])
    size = np.array([box[1].stop - box[1].start, box[0].stop - box[0].start])
    return torch.from_numpy(((xy - origin) / size).astype(np.float32))


def _pad_to(image: np.ndarray, label: np.ndarray, patch: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    pads = [
        (max(p - n, 0) // 2, max(p - n, 0) - max(p - n, 0) // 2)
        for n, p in zip(label.shape, patch, strict=True)
    ]
    if not any(a or b for a, b in pads):
        return image, label
    return np.pad(image, [(0, 0), *pads]), np.pad(label, pads)


class CaseDataset(Dataset):
    """Whole cases for validation / test, one per item."""

    def __init__(self, dm: SegDataModule, case_ids: list[str]) -> None:
        self.dm = dm
        self.case_ids = case_ids

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        case = self.dm.case(self.case_ids[i])
        item: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(case.image, dtype=np.float32)),
            "label": torch.from_numpy(np.ascontiguousarray(case.label, dtype=np.int64))[None],
            "case_id": case.case_id,
            "spacing": torch.tensor(case.spacing or (1.0,) * self.dm.spatial_dims),
        }
        if case.fov is not None:
            item["fov"] = torch.from_numpy(np.ascontiguousarray(case.fov, dtype=bool))[None]
        for key in self.dm.batch_extras:
            item[key] = torch.as_tensor(np.asarray(case.extras[key], dtype=np.float32))
        return item
