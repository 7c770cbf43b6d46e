"""Optimisers and learning-rate schedules of :class:`models.SegmentationModule`, apart from it.

- :data:`OPTIMIZERS`: ``optim.optimizer`` name -> ``builder(params, settings)``: ``adamw``,
  ``adam``, ``sgd`` (Nesterov) and ``sam`` (sharpness-aware minimisation around a base optimiser,
  :mod:`models.optim.sam`);
- :func:`lr_lambda`: the per-step multiplier of the base LR (linear warm-up, then poly, cosine
  or constant).

``settings`` is the module's plain dict of optimiser settings: ``lr``, ``weight_decay``,
``momentum``, ``scheduler``, ``max_steps``, ``warmup_steps``, ``sam_rho``, ``sam_base``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from models.optim.sam import SAM

Params = Iterable[Any]
_BASES: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


def _sam(params: Params, o: dict[str, Any]) -> torch.optim.Optimizer:
    base = _BASES[o["sam_base"]]
    kw: dict[str, Any] = {"lr": o["lr"], "weight_decay": o["weight_decay"]}
    if o["sam_base"] == "sgd":
        kw.update(momentum=o["momentum"], nesterov=True)
    return SAM(params, base, rho=o["sam_rho"], **kw)


OPTIMIZERS: dict[str, Callable[[Params, dict[str, Any]], torch.optim.Optimizer]] = {
    "adamw": lambda params, o: torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"]),
    "adam": lambda params, o: torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"]),
    "sgd": lambda params, o: torch.optim.SGD(
        params, lr=o["lr"], momentum=o["momentum"], nesterov=True, weight_decay=o["weight_decay"]
    ),
    "sam": _sam,
}


def lr_lambda(o: dict[str, Any]) -> Callable[[int], float]:
    """Multiplier of the base LR at step ``t``: linear warm-up, then poly / cosine / constant.

    ``o``: ``warmup_steps``, ``max_steps`` (the schedule length, >= 1) and ``scheduler``
    (``poly``: nnU-Net's ``(1 - t)^0.9``; ``cosine``; anything else: constant).
    """
    warm, total, kind = int(o["warmup_steps"]), max(int(o["max_steps"]), 1), o["scheduler"]

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min((step - warm) / max(total - warm, 1), 1.0)
        if kind == "poly":
            return (1.0 - t) ** 0.9
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return factor


__all__ = ["OPTIMIZERS", "SAM", "lr_lambda"]
