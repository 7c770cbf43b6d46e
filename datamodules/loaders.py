"""Raters and loaders of :class:`~datamodules.base.SegDataModule` (a mixin, kept apart from indexing
and splitting).

- :meth:`rater_names`: every annotator of a dataset (each exposed as ``label_<name>``);
- the loaders: random training patches in ``(epoch, index)`` order
  (:class:`~datamodules.sampling.EpochSampler`, :class:`~datamodules.sampling.PatchSampler`) and
  whole cases for validation / test (:class:`~datamodules.sampling.CaseDataset`);
- the training labels: dense, or (``train_labels="scribble"``) :meth:`training_scribble` of each
  labelled case, and the unlabelled cases' ``image_u`` patches.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import DataLoader, Dataset

from datamodules.sampling import (
    CaseDataset,
    EpochSampler,
    PatchSampler,
    ScribbledCases,
    build_augmentation,
)
from datamodules.scribbles import simulate_scribbles

if TYPE_CHECKING:
    from datamodules.base import Case


class RatersAndLoadersMixin:
    """Needs the :class:`~datamodules.base.SegDataModule` attributes (``splits``, ``case``,
    ``good_case_ids``, ``annotators``, the loader arguments)."""

    ignore_index: int = 255
    """Label value of the voxels a scribble leaves unlabelled (``train_labels="scribble"``)."""

    # ---- raters --------------------------------------------------------------------------
    def rater_names(self) -> list[str]:
        """The dataset's annotators (``annotators``), each exposed as ``label_<name>`` in batches."""
        return list(self.annotators)

    # ---- loaders -------------------------------------------------------------------------
    def _dataset(self, split: str) -> Dataset:
        return CaseDataset(self, self.good_case_ids(split))

    def _train_raters(self, cases: Sequence[Case]) -> list[str]:
        if not self.multi_rater:
            return []
        return [r for r in self.rater_names() if all(f"label_{r}" in c.extras for c in cases)]

    def skip_train_batches(self, n: int) -> None:
        """Leave out the first ``n`` batches of the next training epoch (a run resumed mid-epoch:
        those batches were trained on before the checkpoint; the rest are the same batches)."""
        self._skip_batches = int(n)

    def training_scribble(self, case_id: str) -> np.ndarray:
        """The scribble a labelled training case trains on (``train_labels="scribble"``):
        :func:`~datamodules.scribbles.simulate_scribbles` of its label, seeded by
        ``crc32("<seed>/<case id>")``; ``(*spatial)`` uint8, classes and :attr:`ignore_index`.
        Computed once per case and kept in RAM (the same with or without the disk cache)."""
        if case_id not in self._scribbles:
            seed = zlib.crc32(f"{self.seed}/{case_id}".encode())
            label = np.asarray(self.case(case_id).label)
            scribble = simulate_scribbles(label, self.num_classes, seed=seed, ignore_index=self.ignore_index)
            self._scribbles[case_id] = scribble.astype(np.uint8 if self.ignore_index < 256 else np.int64)
        return self._scribbles[case_id]

    def train_dataloader(self) -> DataLoader:
        """Random patches (:class:`~datamodules.sampling.PatchSampler`) in ``(epoch, index)`` order.

        The :class:`~datamodules.sampling.EpochSampler` makes every epoch draw new patches
        (Lightning calls its ``set_epoch``); the draws depend on ``seed`` only, not on workers.
        The patches are cut from :meth:`training_cases` (memory-mapped cache entries by default):
        the loader and its workers hold the cases' folder names, not their arrays.

        With unlabelled training cases (``labelled_fraction < 1``) every item also carries
        ``image_u``; with ``train_labels="scribble"`` the labels are the cases' scribbles (in RAM,
        :meth:`training_scribble`) and no ``label_<rater>`` is given.
        """
        good = self.good_case_ids("train")
        labelled = [c for c in good if c not in self.unlabelled]
        cases = self.training_cases(labelled)
        if not len(cases):
            raise RuntimeError(f"{self.name}: no loadable training cases (skipped: {self.skipped})")
        scribble = self.train_labels == "scribble"
        raters = [] if scribble else self._train_raters(cases)
        if scribble:
            cases = ScribbledCases(cases, [self.training_scribble(c) for c in labelled], self.ignore_index)
        unlabelled = [c for c in good if c in self.unlabelled]
        ds = PatchSampler(
            cases,
            patch_size=self.patch_size,
            samples_per_epoch=self.samples_per_epoch,
            fg_oversample=self.fg_oversample,
            transform=build_augmentation(
                self.augment, self.spatial_dims, ["label", *(f"label_{r}" for r in raters)]
            ),
            seed=self.seed,
            raters=raters,
            unlabelled=self.training_cases(unlabelled) if unlabelled else (),
            unlabelled_transform=build_augmentation(self.augment, self.spatial_dims, ())
            if unlabelled
            else None,
            ignore_index=self.ignore_index if scribble else None,
        )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(ds), skip_first=getattr(self, "_skip_batches", 0) * self.batch_size),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=len(ds) >= self.batch_size,
        )

    def limit_val_cases(self, n: int | None) -> None:
        """Validate on the first ``n`` validation cases by case id from now on (None: every case).
        The runner sets it (``trainer.val_max_cases``); the test split is never limited."""
        self._val_limit = None if n is None else int(n)

    def val_dataloader(self) -> DataLoader:
        """Whole validation cases, one per batch: every case, or the first ``n`` by case id after
        :meth:`limit_val_cases`."""
        limit = getattr(self, "_val_limit", None)
        if limit is None:
            return DataLoader(self._dataset("val"), batch_size=1, num_workers=self.num_workers)
        ids = sorted(self.good_case_ids("val"))[:limit]
        return DataLoader(CaseDataset(self, ids), batch_size=1, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("test"), batch_size=1, num_workers=self.num_workers)
