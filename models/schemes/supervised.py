"""``supervised``: the default scheme, the module's own training loss and nothing else."""

from __future__ import annotations

from models.registry import register_scheme
from models.schemes.base import TrainingScheme


@register_scheme("supervised", description="the registered loss on labelled patches (the default)")
class SupervisedScheme(TrainingScheme):
    """Exactly ``SegmentationModule.training_loss_supervised``: a module built with this scheme
    trains as one built with ``scheme=None``, with the same checkpoint keys (no ``scheme.step``)."""

    persistent_step = False
