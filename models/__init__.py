"""segbench models: the model and loss registries and the one LightningModule.

Importing this package registers every architecture and loss. Adding a model or a loss is one
new file with a ``@register_model`` / ``@register_loss`` builder plus its module name in
``_PLUGINS``; the registries themselves live in :mod:`models.registry`, a leaf module.
"""

from __future__ import annotations

import importlib

from models.module import SegmentationModule
from models.registry import (
    LOSSES,
    MODELS,
    count_parameters,
    create_loss,
    create_model,
    list_losses,
    list_models,
    loss_entry,
    model_entry,
    register_loss,
    register_model,
)

_PLUGINS = (
    # architectures
    "unet",
    "transformer",
    "umamba",
    "xlstm_unet",
    "graph",
    "stu_net",
    "basnet",
    "rrwnet",
    "tvconv_unet",
    "h_denseunet",
    "oss_net",
    "deeplabv3plus",
    "dformer",
    "att_swin_unet",
    "transdae",
    "paratranscnn",
    "msga_net",
    "tubule_net",
    "prob_unet",
    # losses
    "losses",
    "loss_calibration",
    "loss_mip",
    "loss_topology",
    "loss_basnet",
    "loss_uncertainty",
    "loss_pulaski",
)
for _mod in _PLUGINS:
    importlib.import_module(f"models.{_mod}")

__all__ = [
    "LOSSES",
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
