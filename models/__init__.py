"""segbench models: the model and loss registries and the one LightningModule.

Importing this package registers every architecture family. Adding a model is one new file
with a ``@register_model`` builder plus its module name in ``_FAMILY_MODULES``.
"""

from __future__ import annotations

import importlib

from models.losses import create_loss, list_losses, loss_entry, register_loss
from models.module import SegmentationModule
from models.registry import (
    MODELS,
    count_parameters,
    create_model,
    list_models,
    model_entry,
    register_model,
)

_FAMILY_MODULES = ("unet", "transformer", "umamba", "xlstm_unet", "graph")
for _mod in _FAMILY_MODULES:
    importlib.import_module(f"models.{_mod}")

__all__ = [
    "MODELS",
    "SegmentationModule",
    "count_parameters",
    "create_loss",
    "create_model",
    "list_losses",
    "list_models",
    "loss_entry",
    "model_entry",
    "register_loss",
    "register_model",
]
