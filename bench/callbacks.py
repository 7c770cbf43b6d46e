"""Lightning callbacks of the runner: per-case test metrics (gathered once under DDP)."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from bench.metrics import evaluate_case


def _middle_slice(array: np.ndarray, spatial_dims: int) -> np.ndarray:
    """``(*spatial)`` -> a 2D view: the array itself in 2D, the middle slice of the last axis in 3D."""
    return array if spatial_dims == 2 else array[..., array.shape[-1] // 2]


class CaseMetricsCallback(L.Callback):
    """Computes ``bench.metrics.evaluate_case`` for every test case and keeps the rows.

    The module's ``test_step`` returns the case's probabilities; the metrics are computed here,
    outside the step, by the one metrics implementation.

    DDP: Lightning's distributed sampler gives each rank its share of the cases (repeating a
    case to even out ranks). Each rank evaluates its own cases; at the end of the test epoch the
    rows are gathered once with ``all_gather_object`` (every rank then holds all rows, deduplicated
    by ``case_id`` and sorted), so global rank 0 can write the one record.

    Args:
        betti_patch: patch size of the patch-wise Betti errors (None: skip them).
        nsd_tolerance: NSD tolerance in the units of the case spacing.
        examples: keep this many cases (this rank's first ones) as 2D overlays for tracking:
            ``image (H, W)`` (first channel; middle slice in 3D), ``label``, ``pred`` and ``case_id``.
    """

    def __init__(
        self, *, betti_patch: int | None = None, nsd_tolerance: float = 1.0, examples: int = 0
    ) -> None:
        self.betti_patch = betti_patch
        self.nsd_tolerance = nsd_tolerance
        self.num_examples = examples
        self.rows: list[dict[str, Any]] = []
        self.examples: list[dict[str, Any]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []
        self.examples = []

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
        prob = outputs["prob"].numpy()
        label = outputs["label"].numpy()
        metrics = evaluate_case(
            prob,
            label,
            spacing=outputs["spacing"],
            fov=None if fov is None else fov.numpy().astype(bool),
            betti_patch=self.betti_patch,
            nsd_tolerance=self.nsd_tolerance,
        )
        self.rows.append({"case_id": outputs["case_id"], **metrics})
        if len(self.examples) < self.num_examples:
            dims = label.ndim
            image = batch["image"][0, 0].detach().cpu().float().numpy()
            self.examples.append(
                {
                    "case_id": outputs["case_id"],
                    "image": _middle_slice(image, dims),
                    "label": _middle_slice(label, dims),
                    "pred": _middle_slice(prob.argmax(0), dims),
                }
            )

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, self.rows)
            rows = [row for rank_rows in gathered for row in rank_rows]
        else:
            rows = self.rows
        seen: dict[str, dict[str, Any]] = {}
        for row in rows:  # the distributed sampler may repeat a case to even out ranks
            seen.setdefault(row["case_id"], row)
        self.rows = [seen[k] for k in sorted(seen)]
