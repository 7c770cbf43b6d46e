"""When a run validates, on how many cases, and that validating changes nothing else.

Validation in segbench selects nothing (no checkpoint is chosen on it): it logs ``val_dice`` /
``val_loss`` for the curves and for ``segbench tune``'s objective and pruner. So by default it is
cheap (:func:`step_cadence`): every ``trainer.val_every_n_steps`` optimiser steps and once after
the last step (:class:`FinalValidation`), on the first :func:`val_case_limit` validation cases by
case id. A sweep that sets ``check_val_every_n_epoch`` or ``val_check_interval`` gets Lightning's
cadence exactly as before, on every validation case unless it sets ``val_max_cases`` too.

:class:`ValidationRNG` restores the Python / NumPy / torch RNG states after every validation of a
fit, so a run trains on the same random numbers whatever the cadence; that is why the cadence
fields are left out of the run's hash (:data:`bench.records.identity.HASH_EXCLUDED`).
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

from bench.config import TrainerConfig

DEFAULT_VAL_CASES = 4
"""Validation cases (the first by case id) of the default step cadence when ``val_max_cases`` is unset."""


def step_cadence(t: TrainerConfig) -> bool:
    """True when the run validates every ``val_every_n_steps`` steps (neither
    ``check_val_every_n_epoch`` nor ``val_check_interval`` is set)."""
    return t.check_val_every_n_epoch is None and t.val_check_interval is None


def cadence_kwargs(t: TrainerConfig) -> dict[str, Any]:
    """``lightning.Trainer``'s ``val_check_interval`` / ``check_val_every_n_epoch`` for ``t``.

    The step cadence validates every ``val_every_n_steps`` training batches across epochs
    (Lightning's ``check_val_every_n_epoch=None``); an explicit ``val_check_interval`` alone keeps
    Lightning's per-epoch meaning (``check_val_every_n_epoch=1``, the old default).
    """
    if step_cadence(t):
        return {"val_check_interval": t.val_every_n_steps, "check_val_every_n_epoch": None}
    every = t.check_val_every_n_epoch if t.check_val_every_n_epoch is not None else 1
    return {"val_check_interval": t.val_check_interval, "check_val_every_n_epoch": every}


def resolved_val_cases(t: TrainerConfig) -> int:
    """``val_max_cases`` as used: the value set, else :data:`DEFAULT_VAL_CASES` under the step
    cadence and -1 (every case) under an explicit epoch cadence."""
    if t.val_max_cases is not None:
        return t.val_max_cases
    return DEFAULT_VAL_CASES if step_cadence(t) else -1


def val_case_limit(n: int | None) -> int | None:
    """``val_max_cases`` -> the number of validation cases to keep (None: every case)."""
    return None if n is None or n < 0 else int(n)


def limit_val_cases(dm: Any, n: int | None) -> None:
    """Validate ``dm`` on its first ``n`` validation cases by case id (None / -1: every case)."""
    if hasattr(dm, "limit_val_cases"):
        dm.limit_val_cases(val_case_limit(n))


class FinalValidation(L.Callback):
    """Under the step cadence, asks Lightning to validate after the last training step too.

    Lightning's step cadence only validates at multiples of ``val_check_interval``; setting
    ``trainer.should_stop`` at the last step (the budget ends there anyway) makes it run one
    validation before it stops, so ``val_dice`` always describes the trained model.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        epochs = trainer.max_epochs if trainer.max_epochs is not None else -1
        last_epoch_end = (
            trainer.max_steps <= 0
            and epochs > 0
            and trainer.current_epoch + 1 >= epochs
            and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        )
        if last_step or last_epoch_end:
            trainer.should_stop = True


def _rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


class ValidationRNG(L.Callback):
    """Puts the RNG states back after every validation of a fit, as they were after the training
    batch before it: validating draws random numbers (creating the validation loader's iterator
    draws a seed; some networks sample in eval mode), and without this the training that follows
    (dropout, sampled latents) would depend on how often the run validates.

    It must come before :class:`~bench.run.callbacks.ResumeCheckpoint` among the callbacks, so
    that the checkpoint written at the end of a validation holds the restored states.
    """

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._state = _rng_state()  # a few microseconds; validation may follow this batch

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and self._state is not None:
            _set_rng_state(self._state)
