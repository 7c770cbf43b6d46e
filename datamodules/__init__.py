"""segbench DataModules. Importing the package registers every dataset.

Adding a dataset is one file with a ``@register_dataset`` subclass of ``SegDataModule`` plus its
module name in ``_DATASET_MODULES``; a dataset in nnU-Net raw, MSD or image-folder layout needs no
Python at all (``nnunet_raw`` / ``image_folder``, :mod:`datamodules.generic`).
"""

from __future__ import annotations

import importlib

from datamodules.args import DataArgumentError
from datamodules.base import Case, CaseRef, SegDataModule
from datamodules.download import ChecksumError, ExtractClashError, UnsafeArchiveError
from datamodules.generic import DatasetFileError
from datamodules.readers import CaseLoadError, MissingExtraError
from datamodules.registry import (
    DATASETS,
    create_datamodule,
    dataset_class,
    dataset_entry,
    list_datasets,
    register_dataset,
)
from datamodules.splits import SplitFileError

_DATASET_MODULES = (
    "synthetic",
    "drive",
    "chase_db1",
    "stare",
    "hrf",
    "vevio",
    "isbi2012_em",
    "cxr_landmarks",
    "generic",
    "msd",
)
for _mod in _DATASET_MODULES:
    importlib.import_module(f"datamodules.{_mod}")

__all__ = [
    "DATASETS",
    "Case",
    "CaseLoadError",
    "CaseRef",
    "ChecksumError",
    "DataArgumentError",
    "DatasetFileError",
    "ExtractClashError",
    "MissingExtraError",
    "SegDataModule",
    "SplitFileError",
    "UnsafeArchiveError",
    "create_datamodule",
    "dataset_class",
    "dataset_entry",
    "list_datasets",
    "register_dataset",
]
