"""segbench models: the model and loss registries, the factory and the one LightningModule.

Importing this package registers every architecture and loss. Adding a model or a loss is one
new file with a ``@register_model`` / ``@register_loss`` builder plus its module name in
``_PLUGINS``; the registries live in :mod:`models.registry` (a leaf), building in
:mod:`models.factory`, shared blocks in :mod:`models.layers`, losses in :mod:`models.losses`,
optimisers in :mod:`models.optim` and deep supervision in :mod:`models.deep_supervision`.
"""

from __future__ import annotations

import importlib

from models.factory import count_parameters, create_loss, create_model
from models.module import SegmentationModule
from models.registry import (
    LOSSES,
    MODELS,
    list_losses,
    list_models,
    loss_entry,
    model_entry,
    parse_loss_name,
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
    "losses.region",
    "losses.calibration",
    "losses.mip",
    "losses.topology",
    "losses.basnet",
    "losses.uncertainty",
    "losses.pulaski",
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
    "parse_loss_name",
    "register_loss",
    "register_model",
]
