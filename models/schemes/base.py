"""The base of every training scheme: how a ``SegmentationModule`` turns a batch into its loss.

A scheme is an ``nn.Module`` held by the module as ``module.scheme``: its parameters and buffers
(an EMA teacher, a discriminator, its step counter) are part of the Lightning checkpoint, so a
resumed run restores them, and never part of the kept network (``module.net``). The module calls

- ``attach(net, num_classes=, spatial_dims=)`` once from its ``__init__`` (before any checkpoint
  is loaded: a teacher copy exists for ``load_state_dict`` to fill);
- ``loss(module, batch)`` from ``training_loss``: the scalar to minimise;
- ``after_step(module)`` after every optimiser step (``on_train_batch_end``), e.g. the EMA update;
- ``val_input(batch)`` from ``validation_step``: the network's input (the image by default);
- ``test_case(module, batch)`` from ``test_step``: None (the default: the module's own inference)
  or the case's test outputs under a protocol of the scheme's own (``interactive``: the click loop).

Batches: ``image (B, in_channels, *patch)`` float, ``label (B, 1, *patch)`` int64 and, with
``labelled_fraction < 1``, ``image_u (B_u, in_channels, *patch)`` unlabelled patches.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from models.schemes.functional import ema_decay, ema_update_, sigmoid_rampup


class TrainingScheme(nn.Module):
    """How a segmentation network is trained; the default (``supervised``) is the module's loss."""

    persistent_step = True
    """Whether ``step`` is in the checkpoint (``supervised`` keeps today's checkpoint keys)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("step", torch.zeros((), dtype=torch.long), persistent=self.persistent_step)
        self._logged: dict[str, torch.Tensor | float] = {}

    def attach(
        self, net: nn.Module, *, num_classes: int | None = None, spatial_dims: int | None = None
    ) -> None:
        """Called once by ``SegmentationModule.__init__`` with the student network (not stored)."""

    def loss(self, module: Any, batch: dict[str, Any]) -> torch.Tensor:
        """The scalar ``module`` minimises on ``batch``; the base is the supervised loss."""
        return module.training_loss_supervised(batch)

    def after_step(self, module: Any) -> None:
        """Called after every optimiser step; counts the steps (``self.step``, checkpointed)."""
        self.step += 1

    def val_input(self, batch: dict[str, Any]) -> torch.Tensor:
        """The network input of a validation case ``(1, in_channels[ + click channels], *spatial)``:
        ``batch["image"]`` (the default)."""
        return batch["image"]

    def test_case(self, module: Any, batch: dict[str, Any]) -> dict[str, Any] | None:
        """The test outputs of one whole case when the scheme has its own test protocol, else None.

        Returns:
            None (the module predicts as usual), or ``prob (C, *spatial)`` float32 on CPU (the
            case's probabilities, which the ordinary metrics score), ``protocol_metrics``
            (``{registered metric key: float}``, added to the case's row) and any further keys
            the test step passes on to the metrics callback (e.g. ``dice_per_click``).
        """
        return None

    def log_values(self) -> dict[str, torch.Tensor | float]:
        """Terms of the last ``loss`` call to log (``train_<key>``; detached scalars)."""
        return dict(self._logged)

    @staticmethod
    def total_steps(module: Any) -> int:
        """Length of the run in optimiser steps: the schedule's, else ``max_steps`` (at least 1)."""
        total = getattr(module, "schedule_steps", None) or int(module.optim["max_steps"])
        return max(int(total), 1)

    def ramp(self, module: Any, rampup: float) -> float:
        """Sigmoid ramp-up at this step over ``rampup`` (a fraction of the run's steps)."""
        return sigmoid_rampup(int(self.step), rampup * self.total_steps(module))


class TeacherScheme(TrainingScheme):
    """A scheme with an EMA teacher (``self.teacher``, a frozen copy of the student).

    Args:
        decay: EMA decay ``alpha``; the update after step ``n`` uses ``min(1 - 1/(n + 1), alpha)``.
    """

    def __init__(self, decay: float = 0.99) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.teacher: nn.Module | None = None

    def attach(
        self, net: nn.Module, *, num_classes: int | None = None, spatial_dims: int | None = None
    ) -> None:
        """Make the teacher: a copy of ``net`` with gradients off."""
        self.teacher = copy.deepcopy(net)
        self.teacher.requires_grad_(False)

    def after_step(self, module: Any) -> None:
        """EMA update of the teacher from ``module.net`` with the warm-started decay."""
        super().after_step(module)
        if self.teacher is None:
            raise RuntimeError("the scheme was not attached to a network")
        ema_update_(self.teacher, module.net, ema_decay(int(self.step), self.decay))


def all_images(batch: dict[str, Any]) -> torch.Tensor:
    """``image`` and, when present, ``image_u`` concatenated: ``(B + B_u, in_channels, *patch)``."""
    image = batch["image"]
    unlabelled = batch.get("image_u")
    return image if unlabelled is None else torch.cat([image, unlabelled.to(image)], dim=0)
