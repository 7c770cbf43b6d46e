"""What segbench shows while runs train: one progress display per sweep, never two at once.

Lightning's own progress bars are off in every Trainer segbench builds; :class:`ProgressCallback`
reports the run's phases (training steps, validation cases, test cases) and its last
``train_loss`` / ``val_dice`` to one :class:`Progress`:

- on a terminal (the stream is a TTY), one tqdm bar: the current run's phase, replaced when the
  phase or the run changes, and one line per finished run;
- otherwise (a log file, a pipe, a SLURM job's output), plain lines without carriage returns: one
  when a run starts and one when it ends, and in between at most one every
  :data:`PLAIN_INTERVAL` seconds.

Under DDP only global rank 0 reports.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import lightning as L
from tqdm.auto import tqdm

PLAIN_INTERVAL = 5.0
"""Seconds between two progress lines in a log file (the start and end lines of a run always come)."""

_SHOWN_METRICS = ("train_loss", "val_dice")


class Progress:
    """The progress display of one sweep (or of one run started on its own).

    Args:
        total: runs in the sweep (the ``[i/total]`` of every line).
        stream: where it writes (default: ``sys.stderr``).
        tty: draw a bar (default: whether ``stream`` is a terminal).
        interval: the least seconds between two plain lines of one run.
        clock: ``time.monotonic`` (tests pass a fake one).
    """

    def __init__(
        self,
        total: int = 1,
        *,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval: float = PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = int(total)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else bool(tty)
        self.interval = float(interval)
        self.clock = clock
        self.position = 0  # the sweep position of the current run (1-based once a run starts)
        self.run_id = ""
        self.phase = ""
        self.done = 0
        self.phase_total: int | None = None
        self.metrics: dict[str, float] = {}
        self._bar: Any = None
        self._last_line = -float("inf")
        self._started = 0.0

    # ---- the sweep calls these -----------------------------------------------------------------
    def next_run(self) -> None:
        """The sweep moves on to its next planned run (which may be done already and skipped)."""
        self.position += 1

    def run_started(self, run_id: str) -> None:
        self.run_id = run_id
        self.position = max(self.position, 1)
        self.metrics = {}
        self._started = self.clock()
        self._line("started")

    def run_ended(self, status: str, error: str | None = None) -> None:
        self._close_bar()
        seconds = self.clock() - self._started
        text = f"{status} in {seconds:.1f} s"
        if self.metrics:
            text += f" ({_metrics_text(self.metrics)})"
        if error:
            text += f": {error.splitlines()[0] if error.strip() else error}"
        self._line(text)
        self.phase = ""

    # ---- the callback calls these --------------------------------------------------------------
    def start_phase(self, phase: str, total: int | None) -> None:
        """``phase`` (``train`` steps, ``validate`` / ``test`` cases) begins with ``total`` items."""
        self.phase, self.phase_total, self.done = phase, total, 0
        if self.tty:
            self._close_bar()
            self._bar = tqdm(
                total=total,
                desc=f"{self._prefix()}{phase}",
                unit="step" if phase == "train" else "case",
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
            )

    def update(self, done: int, metrics: dict[str, float] | None = None) -> None:
        """``done`` items of the phase are finished; ``metrics``: the latest logged values."""
        if metrics:
            self.metrics.update(metrics)
        step = done - self.done
        self.done = done
        if self.tty and self._bar is not None:
            self._bar.update(max(step, 0))
            if self.metrics:
                self._bar.set_postfix_str(_metrics_text(self.metrics), refresh=False)
        elif not self.tty and self.clock() - self._last_line >= self.interval:
            of = f"/{self.phase_total}" if self.phase_total else ""
            unit = "steps" if self.phase == "train" else "cases"
            extra = f", {_metrics_text(self.metrics)}" if self.metrics else ""
            self._line(f"{self.phase} {self.done}{of} {unit}{extra}")

    def close(self) -> None:
        self._close_bar()

    # ---- output --------------------------------------------------------------------------------
    def _prefix(self) -> str:
        """``[i/n] <run id>: `` (nothing for a Trainer shown on its own, e.g. a tuning trial)."""
        return f"[{self.position}/{self.total}] {self.run_id}: " if self.run_id else ""

    def _line(self, text: str) -> None:
        line = f"{self._prefix()}{text}"
        if self.tty:
            tqdm.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()
        self._last_line = self.clock()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _metrics_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in metrics.items())


class ProgressCallback(L.Callback):
    """Reports a Trainer's phases and metrics to a :class:`Progress` (global rank 0 only)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def _metrics(self, trainer: L.Trainer) -> dict[str, float]:
        out = {}
        for key in _SHOWN_METRICS:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                out[key] = float(value)
        return out

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            total = trainer.max_steps if trainer.max_steps > 0 else _int(trainer.estimated_stepping_batches)
            self.progress.start_phase("train", total)
            self.progress.update(trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.is_global_zero:
            self.progress.update(trainer.global_step, self._metrics(trainer))

    def _start_eval(self, trainer: L.Trainer, phase: str) -> None:
        if trainer.is_global_zero:
            batches = trainer.num_val_batches if phase == "validate" else trainer.num_test_batches
            self.progress.start_phase(phase, _int(sum(batches)) if batches else None)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._start_eval(trainer, "validate")

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.is_global_zero and trainer.state.fn == "fit":
            self.progress.update(self.progress.done + 1)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and trainer.state.fn == "fit" and not trainer.sanity_checking:
            total = trainer.max_steps if trainer.max_steps > 0 else _int(trainer.estimated_stepping_batches)
            self.progress.start_phase("train", total)
            self.progress.update(trainer.global_step, self._metrics(trainer))

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_eval(trainer, "test")

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.is_global_zero:
            self.progress.update(self.progress.done + 1)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.progress.close()


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # inf for loaders without a length
        return None
