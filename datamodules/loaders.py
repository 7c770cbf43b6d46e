"""Raters and loaders of :class:`~datamodules.base.SegDataModule` (a mixin, kept apart from indexing
and splitting).

- :meth:`rater_names` / :meth:`rater_cases`: every annotator of a dataset, per case, e.g. for a
  human-baseline row (the second annotator scored against the first);
- the loaders: random training patches in ``(epoch, index)`` order
  (:class:`~datamodules.sampling.EpochSampler`, :class:`~datamodules.sampling.PatchSampler`) and
  whole cases for validation / test (:class:`~datamodules.sampling.CaseDataset`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from torch.utils.data import DataLoader, Dataset

from datamodules.args import DataArgumentError
from datamodules.sampling import CaseDataset, EpochSampler, PatchSampler, build_augmentation

if TYPE_CHECKING:
    from datamodules.base import Case


class RatersAndLoadersMixin:
    """Needs the :class:`~datamodules.base.SegDataModule` attributes (``splits``, ``case``,
    ``good_case_ids``, ``annotators``, the loader arguments)."""

    # ---- raters --------------------------------------------------------------------------
    def rater_names(self) -> list[str]:
        """The dataset's annotators (``annotators``), each exposed as ``label_<name>`` in batches."""
        return list(self.annotators)

    def rater_cases(
        self, split: str, rater: str
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray | None, tuple[float, ...]]]:
        """Per-case arrays of one rater on ``split`` (after :meth:`setup`), e.g. for a human baseline.

        Yields ``(case_id, label (*spatial) int64, fov (*spatial) bool or None, spacing)`` for
        every loadable case of ``split`` that ``rater`` annotated, in split order; cases without
        that rater (DRIVE training images have no 2nd observer) are left out. Score the second
        rater against the reference with ``label`` of the same case (``dm.case(case_id).label``).

        Raises:
            DataArgumentError: ``rater`` is not one of :meth:`rater_names` or ``split`` is unknown.
        """
        if rater not in self.rater_names():
            raise DataArgumentError(f"{self.name}: unknown rater {rater!r}; raters: {self.rater_names()}")
        if split not in self.splits:
            raise DataArgumentError(f"{self.name}: unknown split {split!r}; splits: {sorted(self.splits)}")
        for cid in self.good_case_ids(split):
            case = self.case(cid)
            label = case.extras.get(f"label_{rater}")
            if label is not None:
                yield cid, label, case.fov, case.spacing or (1.0,) * self.spatial_dims

    # ---- loaders -------------------------------------------------------------------------
    def _dataset(self, split: str) -> Dataset:
        return CaseDataset(self, self.good_case_ids(split))

    def _train_raters(self, cases: list[Case]) -> list[str]:
        if not self.multi_rater:
            return []
        return [r for r in self.rater_names() if all(f"label_{r}" in c.extras for c in cases)]

    def skip_train_batches(self, n: int) -> None:
        """Leave out the first ``n`` batches of the next training epoch (a run resumed mid-epoch:
        those batches were trained on before the checkpoint; the rest are the same batches)."""
        self._skip_batches = int(n)

    def train_dataloader(self) -> DataLoader:
        """Random patches (:class:`~datamodules.sampling.PatchSampler`) in ``(epoch, index)`` order.

        The :class:`~datamodules.sampling.EpochSampler` makes every epoch draw new patches
        (Lightning calls its ``set_epoch``); the draws depend on ``seed`` only, not on workers.
        """
        cases = [self.case(c) for c in self.good_case_ids("train")]
        if not cases:
            raise RuntimeError(f"{self.name}: no loadable training cases (skipped: {self.skipped})")
        raters = self._train_raters(cases)
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
        )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=EpochSampler(len(ds), skip_first=getattr(self, "_skip_batches", 0) * self.batch_size),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=len(ds) >= self.batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("val"), batch_size=1, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset("test"), batch_size=1, num_workers=self.num_workers)
