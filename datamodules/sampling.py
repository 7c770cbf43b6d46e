"""Training patches (random crops, foreground oversampling as in nnU-Net, MONAI augmentation) and
whole-case validation / test items.

Randomness of the training patches: :class:`EpochSampler` hands the dataset ``(epoch, index)``
pairs and :class:`PatchSampler` draws patch ``index`` of ``epoch`` from a generator seeded with
``(seed, epoch, index)`` alone. Every epoch therefore draws new patches and augmentations, a run
with the same ``seed`` draws the same sequence of batches, and neither depends on the number of
DataLoader workers or on whether they persist (the epoch travels with each index from the main
process, so a persistent worker never replays an old epoch). Lightning calls
``EpochSampler.set_epoch`` at the start of every training epoch (also through its distributed
sampler wrapper); without it, each new pass over the sampler counts as the next epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
)
from torch.utils.data import Dataset, Sampler

if TYPE_CHECKING:
    from datamodules.base import Case, SegDataModule

# name -> builder(probability, spatial_dims, spatial keys) of MONAI dictionary transforms
AUGMENTATIONS: dict[str, Callable[[float, int, list[str]], list[Any]]] = {
    "flip": lambda p, dims, keys: [RandFlipd(keys, prob=p, spatial_axis=a) for a in range(dims)],
    "rot90": lambda p, dims, keys: [RandRotate90d(keys, prob=p, spatial_axes=(dims - 2, dims - 1))],
    "noise": lambda p, dims, keys: [RandGaussianNoised(["image"], prob=p, std=0.1)],
    "scale_intensity": lambda p, dims, keys: [RandScaleIntensityd(["image"], factors=0.2, prob=p)],
    "shift_intensity": lambda p, dims, keys: [RandShiftIntensityd(["image"], offsets=0.2, prob=p)],
    # nnU-Net's pipeline (nnUNetTrainer.get_training_transforms), from MONAI transforms:
    "rotate_scale": lambda p, dims, keys: [_rotate_scale(p, dims, keys)],
    "blur": lambda p, dims, keys: [
        RandGaussianSmoothd(["image"], sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=p)
    ],
    "brightness": lambda p, dims, keys: [RandScaleIntensityd(["image"], factors=0.25, prob=p)],
    "contrast": lambda p, dims, keys: [RandAdjustContrastd(["image"], gamma=(0.75, 1.25), prob=p)],
    "low_res": lambda p, dims, keys: [
        RandSimulateLowResolutiond(
            ["image"], zoom_range=(0.5, 1.0), upsample_mode="trilinear" if dims == 3 else "bilinear", prob=p
        )
    ],
    "gamma": lambda p, dims, keys: [RandAdjustContrastd(["image"], gamma=(0.7, 1.5), prob=p)],
    "gamma_inverted": lambda p, dims, keys: [
        RandAdjustContrastd(["image"], gamma=(0.7, 1.5), invert_image=True, retain_stats=True, prob=p)
    ],
}
"""``augment`` names: probability -> MONAI transforms. The nnU-Net ones follow its defaults:
``rotate_scale`` rotates by up to ±30° (each axis in 3D, in-plane in 2D) and scales by 0.7-1.4
(image bilinear, labels nearest, zeros outside the patch), ``noise`` (std 0.1), ``blur`` (σ 0.5-1),
``brightness`` (× 0.75-1.25), ``contrast`` and ``gamma`` (γ 0.75-1.25 / 0.7-1.5), ``low_res``
(down- and up-sampled by 0.5-1), ``gamma_inverted`` (on the inverted image), ``flip`` (each axis).
nnU-Net rotates a larger region before it crops the patch; here the patch itself is rotated, so its
corners get zeros: an approximation, said in docs/datasets.md."""


def _rotate_scale(p: float, dims: int, keys: list[str]) -> RandAffined:
    """nnU-Net's spatial transform: rotation ±30° and scaling 0.7-1.4 in one affine."""
    angle = np.deg2rad(30.0)
    rotate = (angle, angle, angle) if dims == 3 else (angle,)
    modes = ["bilinear"] + ["nearest"] * (len(keys) - 1)
    return RandAffined(
        keys, prob=p, rotate_range=rotate, scale_range=(0.3,) * dims, mode=modes, padding_mode="zeros"
    )


def augment_problem(augment: Any) -> str | None:
    """Why ``augment`` is not a valid ``{name: probability}`` mapping, or None when it is."""
    if not isinstance(augment, dict):
        return f"must be a mapping {{name: probability}}, got {augment!r}"
    unknown = sorted(set(augment) - set(AUGMENTATIONS))
    if unknown:
        return f"has unknown key(s) {unknown}; known: {sorted(AUGMENTATIONS)}"
    for name, p in augment.items():
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            return f"probability of {name!r} must be a number in [0, 1], got {p!r}"
    return None


def build_augmentation(
    augment: dict[str, float], spatial_dims: int, keys: Sequence[str] = ("label",)
) -> Compose | None:
    """MONAI ``Compose`` from ``{name: probability}``; names are the keys of ``AUGMENTATIONS``.

    ``keys`` are the label-like keys moved together with ``image`` by spatial augmentations
    (``label`` plus every ``label_<rater>`` of a multi-rater patch).
    """
    problem = augment_problem(augment)
    if problem:
        raise ValueError(f"augment {problem}")
    spatial = ["image", *keys]
    transforms = [
        t for name, p in augment.items() if p > 0 for t in AUGMENTATIONS[name](p, spatial_dims, spatial)
    ]
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


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` for ``index`` in ``range(length)``; ``set_epoch`` picks the epoch.

    Lightning calls :meth:`set_epoch` before every training epoch. Without a call, each new
    iteration is the epoch after the previous one (the first is epoch 0). ``skip_first`` leaves
    out the first indices of the first iteration only (resuming in the middle of an epoch).
    """

    def __init__(self, length: int, skip_first: int = 0) -> None:
        self.length = length
        self._next_epoch = 0
        self._skip = int(skip_first)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration draw ``epoch``."""
        self._next_epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, self._next_epoch = self._next_epoch, self._next_epoch + 1
        skip, self._skip = self._skip, 0
        return iter([(epoch, i) for i in range(skip, self.length)])


class PatchSampler(Dataset):
    """``samples_per_epoch`` random patches from the training cases.

    An item is addressed by ``(epoch, index)`` (from :class:`EpochSampler`; a plain ``index``
    means epoch 0) and drawn from ``np.random.default_rng([seed, epoch, index])``: the case, the
    patch position and the augmentation's random state.

    With probability ``fg_oversample`` a patch is centred on a random foreground voxel, otherwise
    placed uniformly; cases smaller than the patch are zero-padded (label 0).

    Items: ``image (in_channels, *patch)`` float32, ``label (1, *patch)`` int64 and, for each
    name in ``raters`` the drawn case has, ``label_<name> (1, *patch)`` int64 from the same crop
    (and the same spatial augmentation).

    ``unlabelled`` cases (training cases outside the label budget) add ``image_u (in_channels,
    *patch)`` float32 to every item: a uniformly placed patch of a random unlabelled case, drawn
    from its own generator ``default_rng([seed, epoch, index, 1])`` (the labelled draws are the
    same with or without it) and augmented by ``unlabelled_transform`` (the image part of the
    pipeline). Without unlabelled cases the items are exactly as before.

    ``ignore_index`` (scribble labels): out-of-image voxels of the label, from the padding of small
    cases and from spatial augmentation (``rotate_scale``), get ``ignore_index`` instead of 0 (the
    label is shifted by one around the transform, so the transform's zero padding becomes
    ``ignore_index``), and foreground oversampling reads ``cases.foreground`` (scribbled voxels
    only, :class:`ScribbledCases`).

    ``cases`` is a list of loaded cases or :class:`~datamodules.diskcache.CachedCases` (memory-mapped
    cache entries, labels as stored, uint8): only the crop is read and converted, and pickling the
    sampler for DataLoader workers carries folder names, not arrays.

    A case with ``extras["landmarks"]`` (``(N, 2)`` normalised ``(x, y)`` in the whole image)
    also yields ``landmarks (N, 2)`` normalised to the patch (``[0, 1]`` when the patch covers the
    image; spatial augmentation is not applied to them).
    """

    def __init__(
        self,
        cases: Sequence[Case],
        *,
        patch_size: Sequence[int],
        samples_per_epoch: int,
        fg_oversample: float = 0.33,
        transform: Compose | None = None,
        seed: int = 0,
        raters: Sequence[str] = (),
        unlabelled: Sequence[Case] = (),
        unlabelled_transform: Compose | None = None,
        ignore_index: int | None = None,
    ) -> None:
        self.cases = cases
        self.patch = tuple(patch_size)
        self.n = samples_per_epoch
        self.fg_oversample = fg_oversample
        self.transform = transform
        self.seed = int(seed)
        self.raters = tuple(raters)
        self.unlabelled = unlabelled
        self.unlabelled_transform = unlabelled_transform
        self.ignore_index = ignore_index
        # flat indices of each case's foreground: read from the cache entry (CachedCases.foreground),
        # or found once here
        lazy = callable(getattr(cases, "foreground", None))
        self._fg = None if lazy else [np.flatnonzero(c.label > 0) for c in cases]

    def _foreground(self, k: int) -> np.ndarray:
        """``(n,)`` flat C-order indices of case ``k``'s voxels with ``label > 0``."""
        return self.cases.foreground(k) if self._fg is None else self._fg[k]

    def __len__(self) -> int:
        return self.n

    def _rng(self, key: int | tuple[int, int]) -> np.random.Generator:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        return np.random.default_rng([self.seed % 2**63, int(epoch), int(i)])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        rng = self._rng(key)
        k = int(rng.integers(len(self.cases)))
        case, fg = self.cases[k], self._foreground(k)
        labels = {"label": case.label}
        labels.update(
            {f"label_{r}": case.extras[f"label_{r}"] for r in self.raters if f"label_{r}" in case.extras}
        )
        image, labels = _pad_to(case.image, labels, self.patch, label_value=self.ignore_index or 0)
        center = None
        if len(fg) and rng.random() < self.fg_oversample:
            offset = [(p - n) // 2 if p > n else 0 for n, p in zip(case.label.shape, self.patch, strict=True)]
            voxel = np.unravel_index(int(fg[int(rng.integers(len(fg)))]), case.label.shape)
            center = np.array(voxel) + np.array(offset)
        padded = labels["label"].shape
        box = crop_box(padded, self.patch, rng, center)
        # copies (np.array), never views: the cases may be read-only memory maps
        item = {"image": torch.from_numpy(np.array(image[(slice(None), *box)], dtype=np.float32, order="C"))}
        for key_, lab in labels.items():
            item[key_] = torch.from_numpy(np.array(lab[box], dtype=np.int64, order="C"))[None]
        landmarks = case.extras.get("landmarks")
        if self.transform is not None:
            self.transform.set_random_state(seed=int(rng.integers(2**31)))
            if self.ignore_index is not None:  # 0 = outside the image after the transform
                item.update({k_: item[k_] + 1 for k_ in labels})
            with _plain_tensors():
                item = self.transform(item)
            item = {k_: torch.as_tensor(np.asarray(v)).contiguous() for k_, v in item.items()}
            for key_ in labels:
                item[key_] = item[key_].long()
                if self.ignore_index is not None:
                    lab = item[key_]
                    item[key_] = torch.where(lab == 0, torch.full_like(lab, self.ignore_index), lab - 1)
        if landmarks is not None:
            item["landmarks"] = _landmarks_in_patch(landmarks, case.label.shape, padded, box)
        if len(self.unlabelled):
            item["image_u"] = self._unlabelled_patch(key)
        return item

    def _unlabelled_patch(self, key: int | tuple[int, int]) -> torch.Tensor:
        """``(in_channels, *patch)`` float32: a uniformly placed, augmented patch of a random
        unlabelled case, from ``default_rng([seed, epoch, index, 1])``."""
        epoch, i = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed % 2**63, int(epoch), int(i), 1])
        case = self.unlabelled[int(rng.integers(len(self.unlabelled)))]
        image, padded = _pad_to(case.image, {"label": case.label}, self.patch)
        box = crop_box(padded["label"].shape, self.patch, rng, None)
        crop = torch.from_numpy(np.array(image[(slice(None), *box)], dtype=np.float32, order="C"))
        if self.unlabelled_transform is None:
            return crop
        self.unlabelled_transform.set_random_state(seed=int(rng.integers(2**31)))
        with _plain_tensors():
            out = self.unlabelled_transform({"image": crop})
        return torch.as_tensor(np.asarray(out["image"]), dtype=torch.float32).contiguous()


@contextlib.contextmanager
def _plain_tensors() -> Iterator[None]:
    """MONAI transforms without their ``MetaTensor`` bookkeeping: the same values, in half the time
    (the training items carry no metadata, so nothing is lost)."""
    before = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(before)


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


def _pad_to(
    image: np.ndarray, labels: dict[str, np.ndarray], patch: Sequence[int], label_value: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pad ``image (C, *spatial)`` with zeros and every ``(*spatial)`` label with ``label_value`` to at
    least ``patch``, centred."""
    shape = next(iter(labels.values())).shape
    pads = [
        (max(p - n, 0) // 2, max(p - n, 0) - max(p - n, 0) // 2) for n, p in zip(shape, patch, strict=True)
    ]
    if not any(a or b for a, b in pads):
        return image, labels
    padded = {k: np.pad(v, pads, constant_values=label_value) for k, v in labels.items()}
    return np.pad(image, [(0, 0), *pads]), padded


class ScribbledCases(Sequence["Case"]):
    """Training cases whose ``label`` is replaced by a scribble (what :class:`PatchSampler` reads
    with ``train_labels="scribble"``).

    Item ``k`` is ``cases[k]`` with ``label = scribbles[k]`` (``(*spatial)``, classes and
    ``ignore_index``) and no ``label_<rater>`` extras; :meth:`foreground` lists the scribbled
    foreground voxels, so foreground oversampling centres on them.
    """

    def __init__(
        self, cases: Sequence[Case], scribbles: Sequence[np.ndarray], ignore_index: int = 255
    ) -> None:
        self.cases = cases
        self.scribbles = list(scribbles)
        self.ignore_index = int(ignore_index)
        self._fg = [np.flatnonzero((s > 0) & (s != self.ignore_index)) for s in self.scribbles]

    def __len__(self) -> int:
        return len(self.scribbles)

    def __getitem__(self, k: int) -> Case:  # type: ignore[override]
        case = self.cases[k]
        extras = {key: v for key, v in case.extras.items() if not key.startswith("label_")}
        return dataclasses.replace(case, label=self.scribbles[k], extras=extras)

    def foreground(self, k: int) -> np.ndarray:
        """``(n,)`` flat C-order indices of case ``k``'s scribbled foreground voxels."""
        return self._fg[k]


class CaseDataset(Dataset):
    """Whole cases for validation / test, one per item.

    Items: ``image (in_channels, *spatial)`` float32, ``label (1, *spatial)`` int64,
    ``label_<rater> (1, *spatial)`` int64 for every rater of :meth:`SegDataModule.rater_names`
    the case has, ``fov (1, *spatial)`` bool where there is one, ``case_id``, ``spacing``
    ``(spatial_dims,)`` and the dataset's ``batch_extras``.
    """

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
        for rater in self.dm.rater_names():
            if f"label_{rater}" in case.extras:
                lab = case.extras[f"label_{rater}"]
                item[f"label_{rater}"] = torch.from_numpy(np.ascontiguousarray(lab, dtype=np.int64))[None]
        if case.fov is not None:
            item["fov"] = torch.from_numpy(np.ascontiguousarray(case.fov, dtype=bool))[None]
        for key in self.dm.batch_extras:
            item[key] = torch.as_tensor(np.asarray(case.extras[key], dtype=np.float32))
        return item
