"""Lightning callbacks of the runner: per-case test metrics."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from bench.metrics import evaluate_case


class CaseMetricsCallback(L.Callback):
    """Computes ``bench.metrics.evaluate_case`` for every test case and keeps the rows.

    The module's ``test_step`` returns the case's probabilities; the metrics are computed here,
    outside the step, by the one metrics implementation. Under DDP each rank evaluates its own
    cases and the rows are gathered on rank 0 at the end of the test epoch.
    """

    def __init__(self, *, betti_patch: int | None = None, nsd_tolerance: float = 1.0) -> None:
        self.betti_patch = betti_patch
        self.nsd_tolerance = nsd_tolerance
        self.rows: list[dict[str, Any]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        fov = outputs["fov"]
        metrics = evaluate_case(
            outputs["prob"].numpy(),
            outputs["label"].numpy(),
            spacing=outputs["spacing"],
            fov=None if fov is None else fov.numpy().astype(bool),
            betti_patch=self.betti_patch,
            nsd_tolerance=self.nsd_tolerance,
        )
        self.rows.append({"case_id": outputs["case_id"], **metrics})

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, self.rows)
            seen: dict[str, dict[str, Any]] = {}
            for rows in gathered:
                for row in rows:  # the distributed sampler may repeat a case to even out ranks
                    seen.setdefault(row["case_id"], row)
            self.rows = [seen[k] for k in sorted(seen)]
