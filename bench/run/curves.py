"""The learning curve a run keeps in its record: ``val_trace``, one ``[step, val_dice, val_loss]``
per validation (``trainer.val_every_n_steps``, and once after the last step), kept across resume.

The leaderboard reads it to draw each row's curve and to flag a row whose curve still rises at its
budget (:mod:`bench.leaderboard.convergence`).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L


def _value(trainer: L.Trainer, key: str) -> float:
    v = trainer.callback_metrics.get(key)
    return float(v) if v is not None else math.nan


class ValTraceCallback(L.Callback):
    """Records ``[step, val_dice, val_loss]`` at the end of every validation of a fit (not the
    sanity check), once per step; its state rides in the resume checkpoint, so a resumed run's
    trace holds the points of every attempt."""

    def __init__(self) -> None:
        self.trace: list[list[float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or getattr(trainer, "testing", False):
            return
        step = int(trainer.global_step)
        point = [step, _value(trainer, "val_dice"), _value(trainer, "val_loss")]
        if self.trace and self.trace[-1][0] == step:
            self.trace[-1] = point
        else:
            self.trace.append(point)

    def state_dict(self) -> dict[str, Any]:
        return {"trace": self.trace}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trace = [list(x) for x in state_dict.get("trace", [])]
