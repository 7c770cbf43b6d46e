"""The one LightningModule: any registered network + any registered loss.

The module never picks an architecture; it receives a built network, a built loss and plain
optimiser / inference settings. Batches are dicts:

- train: ``image (B, in_channels, *patch)`` float, ``label (B, 1, *patch)`` int64;
- val/test: one whole case per batch, ``image (1, in_channels, *spatial)``, ``label (1, 1,
  *spatial)``, optional ``fov (1, 1, *spatial)`` bool, ``case_id`` list of str.

Validation and test run MONAI sliding-window inference with windows of the training patch size
(cases smaller than a window are padded, larger ones tiled with Gaussian blending).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import nn

from bench.metrics import dice


def _logits(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return out["logits"] if isinstance(out, dict) else out


class SegmentationModule(L.LightningModule):
    """Train / validate / test a segmentation network with softmax outputs.

    Args:
        net: maps ``(B, in_channels, *spatial)`` to logits ``(B, num_classes, *spatial)`` (or a
            dict with ``"logits"``). If it defines ``aux_loss(outputs, batch)``, that term is
            added to the training loss (e.g. a landmark loss of a graph decoder).
        loss: ``loss(logits, target)`` with ``target (B, 1, *spatial)`` labels.
        num_classes: number of output channels including background.
        roi_size: sliding-window size for whole-case inference (the training patch size).
        optimizer: ``adamw``, ``adam`` or ``sgd``.
        lr, weight_decay, momentum: optimiser settings (momentum only for SGD, Nesterov).
        scheduler: ``poly`` (nnU-Net's (1 - t)^0.9), ``cosine`` or ``none``; stepped per step.
        max_steps: schedule length in optimiser steps.
        warmup_steps: linear warm-up steps before the schedule.
        sw_batch_size, sw_overlap: sliding-window batch size and overlap fraction.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        *,
        num_classes: int,
        roi_size: Sequence[int],
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        momentum: float = 0.99,
        scheduler: str = "poly",
        max_steps: int = 1000,
        warmup_steps: int = 0,
        sw_batch_size: int = 4,
        sw_overlap: float = 0.25,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss_fn = loss
        self.num_classes = num_classes
        self.roi_size = tuple(int(s) for s in roi_size)
        self.optim = dict(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            scheduler=scheduler,
            max_steps=max_steps,
            warmup_steps=warmup_steps,
        )
        self.sw_batch_size = sw_batch_size
        self.sw_overlap = sw_overlap
        self.infer_seconds = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """``x (B, in_channels, *spatial)`` -> network output (logits or dict)."""
        return self.net(x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.net(batch["image"])
        loss = self.loss_fn(_logits(out), batch["label"])
        if hasattr(self.net, "aux_loss"):
            loss = loss + self.net.aux_loss(out, batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    @torch.no_grad()
    def predict_logits(self, image: torch.Tensor) -> torch.Tensor:
        """Whole-case logits ``(B, C, *spatial)`` by sliding-window inference."""
        return sliding_window_inference(
            image,
            roi_size=self.roi_size,
            sw_batch_size=self.sw_batch_size,
            predictor=lambda x: _logits(self.net(x)),
            overlap=self.sw_overlap,
            mode="gaussian",
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.predict_logits(batch["image"])
        label = batch["label"]
        loss = self.loss_fn(logits, label)
        pred = F.one_hot(logits.argmax(1), self.num_classes).movedim(-1, 1)
        target = F.one_hot(label[:, 0].long(), self.num_classes).movedim(-1, 1)
        per_class = dice(pred[:, 1:], target[:, 1:])  # (B, C-1), NaN where both empty
        val_dice = torch.nan_to_num(per_class, nan=1.0).mean()
        self.log("val_loss", loss, sync_dist=True, batch_size=1)
        self.log("val_dice", val_dice, prog_bar=True, sync_dist=True, batch_size=1)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Returns the case's probabilities for the metrics callback.

        Returns:
            ``prob (C, *spatial)`` float32 on CPU, ``label (*spatial)``, ``fov`` or None,
            ``case_id`` and ``spacing``.
        """
        start = time.perf_counter()
        prob = torch.softmax(self.predict_logits(batch["image"]).float(), dim=1)
        self.infer_seconds += time.perf_counter() - start
        fov = batch.get("fov")
        return {
            "prob": prob[0].cpu(),
            "label": batch["label"][0, 0].cpu(),
            "fov": None if fov is None else fov[0, 0].cpu(),
            "case_id": batch["case_id"][0],
            "spacing": _first(batch.get("spacing")),
        }

    def configure_optimizers(self) -> Any:
        o = self.optim
        params = [p for p in self.parameters() if p.requires_grad]
        optimizers = {
            "adamw": lambda: torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"]),
            "adam": lambda: torch.optim.Adam(params, lr=o["lr"], weight_decay=o["weight_decay"]),
            "sgd": lambda: torch.optim.SGD(
                params,
                lr=o["lr"],
                momentum=o["momentum"],
                nesterov=True,
                weight_decay=o["weight_decay"],
            ),
        }
        opt = optimizers[o["optimizer"]]()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(o))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _first(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value[0].tolist()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
        return [float(v[0]) for v in value]
    return value


def _lr_lambda(o: dict[str, Any]):
    """Multiplier of the base LR at step ``t``: linear warm-up, then poly / cosine / constant."""
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
