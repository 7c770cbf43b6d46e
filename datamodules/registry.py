"""Dataset registry: ``@register_dataset`` on a ``SegDataModule`` subclass."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L

from bench.registry import Entry, Registry

DATASETS: Registry[L.LightningDataModule] = Registry("dataset")


def register_dataset(
    name: str, **meta: Any
) -> Callable[[type[L.LightningDataModule]], type[L.LightningDataModule]]:
    """Register a DataModule class under ``name``; ``meta`` is read from the class when absent."""

    def deco(cls: type[L.LightningDataModule]) -> type[L.LightningDataModule]:
        info = {
            "task": getattr(cls, "task", ""),
            "spatial_dims": getattr(cls, "spatial_dims", 2),
            "license": getattr(cls, "license", ""),
            **meta,
        }
        cls.name = name
        return DATASETS.register(name, description=info["task"], **info)(cls)

    return deco


def create_datamodule(name: str, **kwargs: Any) -> L.LightningDataModule:
    """Build the DataModule registered as ``name`` with ``kwargs``."""
    return DATASETS.build(name, **kwargs)


def list_datasets() -> list[str]:
    """Registered dataset names."""
    return DATASETS.names()


def dataset_entry(name: str) -> Entry[L.LightningDataModule]:
    """Registry entry (class and metadata) of ``name``."""
    return DATASETS.get(name)


def dataset_class(name: str, kwargs: Mapping[str, Any] | None = None) -> type[L.LightningDataModule]:
    """The class that describes the dataset entry ``{name, **kwargs}``: what the runner reads
    ``spatial_dims``, ``default_patch_size``, ``annotators`` and the argument checks from.

    The registered class, or for a dataset declared by its files (``nnunet_raw``, ``image_folder``)
    its ``for_root(kwargs["root"])``: the subclass whose dims, channels and classes were read there.

    Raises:
        KeyError: unknown name. ValueError: a root whose files do not declare a dataset (names it).
    """
    cls = DATASETS.get(name).factory
    for_root = getattr(cls, "for_root", None)
    return for_root((kwargs or {}).get("root")) if callable(for_root) else cls
