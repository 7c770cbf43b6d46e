"""Lightning's known-benign messages, filtered around segbench's own runs (:func:`quiet_run`).

Every filter is one :class:`Benign` entry of :data:`BENIGN` (and :data:`SRUN_HINT` in local runs):
the start of the message and why it tells a segbench user nothing. Only these messages are
dropped, only while a run executes (:func:`bench.run.execute.run_one`); any other warning or log
line shows as before. Messages that segbench can avoid at their source are avoided there
instead: ``limit_val_batches=1.0`` is passed to Lightning as its default (None), the resume
checkpoint is saved with ``weights_only=False``, and local runs get an explicit
``LightningEnvironment`` (:func:`bench.run.build.cluster_plugins`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Benign:
    """One message dropped in segbench's runs.

    Attributes:
        name: a short name (the tests and the docs use it).
        kind: ``warning`` (``warnings.warn``) or ``log`` (a Lightning logger's record).
        start: a regular expression matched at the start of the message.
        reason: why the message carries nothing for a segbench run.
    """

    name: str
    kind: str
    start: str
    reason: str


BENIGN: tuple[Benign, ...] = (
    Benign(
        "lightning_tip",
        "log",
        r"💡 Tip: ",
        "an advertisement for Lightning's cloud loggers and model registry; segbench writes its own records",
    ),
    Benign(
        "pytree_deprecation",
        "warning",
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        "Lightning's own use of a torch API that torch deprecated; nothing a segbench user can change",
    ),
    Benign(
        "budget_reached",
        "log",
        r"`Trainer\.fit` stopped: `max_(steps|epochs)=",
        "the run ended at the budget its config sets; the record holds `steps` and `epochs`",
    ),
    Benign(
        "short_epoch_logging",
        "warning",
        r"The number of training batches \(\d+\) is smaller than the logging interval",
        "Lightning logs every `log_every_n_steps` steps counted across epochs (as segbench's module "
        "does), so short epochs lose no logged step",
    ),
    Benign(
        "mid_epoch_resume",
        "warning",
        r"You're resuming from a checkpoint that ended before the epoch ended",
        "segbench's DataModule skips the batches the killed attempt trained on (`skip_train_batches`), "
        "so a mid-epoch resume is exact (tests/bench/test_resume.py)",
    ),
    Benign(
        "device_summary",
        "log",
        r"(GPU|TPU|HPU) available: |LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES",
        "the record's `device` and `world_size` state what the run used (a GPU left unused still warns)",
    ),
)
"""The messages :func:`quiet_run` drops, each with its reason."""

SRUN_HINT = Benign(
    "srun_hint",
    "warning",
    r"The `srun` command is available on your system but is not used",
    "dropped in local runs only: segbench runs on SLURM through `--executor slurm` (or "
    "`python -m bench.cluster.slurm` in an sbatch script), never by prepending srun to `segbench run`; "
    "Lightning probes SLURM when fit / test get no checkpoint path, even with a LightningEnvironment",
)
"""Lightning's hint for a machine with SLURM installed, wrong for a run that is local by intent."""


class _DropBenign(logging.Filter):
    def __init__(self, patterns: list[re.Pattern[str]]) -> None:
        super().__init__()
        self.patterns = patterns

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return True
        return not any(p.match(message) for p in self.patterns)


def _lightning_loggers() -> list[logging.Logger]:
    names = [
        name
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and name.split(".")[0] in ("lightning", "lightning_utilities")
    ]
    return [logging.getLogger(name) for name in sorted(names)]


@contextlib.contextmanager
def quiet_run(filters: tuple[Benign, ...] = BENIGN) -> Iterator[None]:
    """Drop the ``filters`` messages (warnings, and records of Lightning's loggers) inside the block."""
    log_filter = _DropBenign([re.compile(f.start) for f in filters if f.kind == "log"])
    loggers = _lightning_loggers()
    with warnings.catch_warnings():
        for f in filters:
            if f.kind == "warning":
                warnings.filterwarnings("ignore", message=f.start)
        for logger in loggers:
            logger.addFilter(log_filter)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(log_filter)
