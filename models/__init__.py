"""segbench models: the model and loss registries, the factory and the one LightningModule.

Importing this package registers every architecture and loss. Adding a model is one new file with
a ``@register_model`` builder plus its module name in ``_PLUGINS``; adding a loss is one new file
under ``models/losses/`` with a ``@register_loss`` builder (every file there is imported). The
registries live in :mod:`models.registry` (a leaf), building in
:mod:`models.factory`, shared blocks in :mod:`models.layers`, losses in :mod:`models.losses`,
optimisers in :mod:`models.optim` and deep supervision in :mod:`models.deep_supervision`.
"""

from __future__ import annotations

import importlib
import pkgutil

from models import losses
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
    "nnunet_nets",
    "resenc_hybrids",
)
"""The architecture files, imported in this order (their ``@register_model`` fills the registry)."""
for _mod in _PLUGINS:
    importlib.import_module(f"models.{_mod}")
for _info in pkgutil.iter_modules(losses.__path__):  # every file of models/losses/ registers itself
    importlib.import_module(f"models.losses.{_info.name}")

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
