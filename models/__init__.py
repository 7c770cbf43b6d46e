"""segbench models: the model and loss registries, the factory and the one LightningModule.

Importing this package registers every architecture and loss. Adding a model is one new file with
a ``@register_model`` builder plus its module name in ``_PLUGINS``; adding a loss is one new file
under ``models/losses/`` with a ``@register_loss`` builder (every file there is imported). The
registries live in :mod:`models.registry` (a leaf), building in
:mod:`models.factory`, shared blocks in :mod:`models.layers`, losses in :mod:`models.losses`,
optimisers in :mod:`models.optim`, deep supervision in :mod:`models.deep_supervision` and training
schemes (supervised, mean teacher, DS6, pseudo-labels, scribbles; ``create_scheme``) in
:mod:`models.schemes`, one file each (every file there is imported).
"""

from __future__ import annotations

import importlib
import pkgutil

from models import losses, schemes
from models.factory import count_parameters, create_loss, create_model, create_scheme
from models.module import SegmentationModule
from models.registry import (
    LOSSES,
    MODELS,
    SCHEMES,
    list_losses,
    list_models,
    list_schemes,
    loss_entry,
    model_entry,
    parse_loss_name,
    register_loss,
    register_model,
    register_scheme,
    scheme_entry,
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
    "attention_unet",
    "mask_former",
)
"""The architecture files, imported in this order (their ``@register_model`` fills the registry)."""
for _mod in _PLUGINS:
    importlib.import_module(f"models.{_mod}")
for _info in pkgutil.iter_modules(losses.__path__):  # every file of models/losses/ registers itself
    importlib.import_module(f"models.losses.{_info.name}")
for _info in pkgutil.iter_modules(schemes.__path__):  # every file of models/schemes/ registers itself
    importlib.import_module(f"models.schemes.{_info.name}")

__all__ = [
    "LOSSES",
    "MODELS",
    "SCHEMES",
    "SegmentationModule",
    "count_parameters",
    "create_loss",
    "create_model",
    "create_scheme",
    "list_losses",
    "list_models",
    "list_schemes",
    "loss_entry",
    "model_entry",
    "parse_loss_name",
    "register_loss",
    "register_model",
    "register_scheme",
    "scheme_entry",
]
