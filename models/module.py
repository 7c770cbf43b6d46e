"""The one LightningModule: any registered network + any registered loss.

The module never picks an architecture; it receives a built network, a built loss and plain
optimiser / inference settings. Batches are dicts:

- train: ``image (B, in_channels, *patch)`` float, ``label (B, 1, *patch)`` int64, and for a
  semi-supervised scheme ``image_u (B_u, in_channels, *patch)`` unlabelled patches;
- val/test: one whole case per batch, ``image (1, in_channels, *spatial)``, ``label (1, 1,
  *spatial)``, optional ``fov (1, 1, *spatial)`` bool, ``case_id`` list of str.

Validation and test run MONAI sliding-window inference with windows of the training patch size
(cases smaller than a window are padded, larger ones tiled with Gaussian blending).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import nn

from bench.metrics import DiceAccumulator, reduce_values
from models.deep_supervision import supervised_loss
from models.inference import parse_postprocess, postprocess, tta_probabilities
from models.optim import OPTIMIZERS, lr_lambda
from models.schemes.base import TrainingScheme
from models.schemes.supervised import SupervisedScheme


def _logits(out: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return out["logits"] if isinstance(out, dict) else out


class SegmentationModule(L.LightningModule):
    """Train / validate / test a segmentation network with softmax outputs.

    Args:
        net: maps ``(B, in_channels, *spatial)`` to logits ``(B, num_classes, *spatial)`` (or a
            dict with ``"logits"``). A deeply supervised net (``net.segbench_deep_supervision``, set by
            ``create_model`` from the registration) has ``loss`` applied to its side outputs
            too (:func:`models.deep_supervision.supervised_loss`). If it defines
            ``aux_loss(outputs, batch)``, that term is added to the training loss (e.g. a
            landmark loss of a graph decoder).
        loss: ``loss(logits, target)`` with ``target (B, 1, *spatial)`` labels.
        num_classes: number of output channels including background.
        roi_size: sliding-window size for whole-case inference (the training patch size).
        optimizer: ``adamw``, ``adam``, ``sgd`` or ``sam`` (:mod:`models.optim`).
        lr, weight_decay, momentum: optimiser settings (momentum only for SGD, Nesterov).
        scheduler: ``poly`` (nnU-Net's (1 - t)^0.9), ``cosine`` or ``none``; stepped per step.
        max_steps: schedule length in optimiser steps; ``-1`` (an epoch budget) takes the length
            from ``trainer.estimated_stepping_batches``.
        warmup_steps: linear warm-up steps before the schedule.
        sam_rho, sam_base: radius and base optimiser of ``optimizer="sam"`` (sharpness-aware
            minimisation: two forward/backward passes per step, manual optimisation).
        gradient_clip_val: gradient clipping under SAM (Lightning clips automatically otherwise).
        loss_targets: ``"label"`` (``batch["label"] (B, 1, *spatial)``) or ``"raters"`` (every
            annotator's labels ``batch["label_<name>"]`` stacked to ``(B, R, *spatial)``).
        sw_batch_size, sw_overlap: sliding-window batch size and overlap fraction.
        tta: ``none`` or ``flip`` (test only: mirror test-time augmentation, averaged
            probabilities, :func:`models.inference.tta_probabilities`).
        postprocess: ``none``, ``largest_component`` or ``min_size:N`` (test only: applied per
            foreground class to the argmax, :func:`models.inference.postprocess`).
        scheme: how the network is trained (``models.create_scheme``; :mod:`models.schemes`);
            ``None`` is ``supervised``, the loss above. The scheme is a submodule: its teacher /
            discriminator are in the checkpoint (a resume restores them), never in ``net``.

    Validation: ``val_loss`` and ``val_dice``; ``val_dice`` is the same Dice as the records
    (``bench.metrics``: per case and foreground class, field of view applied, NaN where both
    masks are empty, NaN-skipping class mean), reduced over cases by ``reduce_values``.
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
        sam_rho: float = 0.05,
        sam_base: str = "sgd",
        loss_targets: str = "label",
        gradient_clip_val: float | None = None,
        sw_batch_size: int = 4,
        sw_overlap: float = 0.25,
        tta: str = "none",
        postprocess: str = "none",
        scheme: TrainingScheme | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss_fn = loss
        self.num_classes = num_classes
        self.roi_size = tuple(int(s) for s in roi_size)
        self._output_keys: frozenset[str] | None = None  # the keys of the network's dict output
        self.optim = dict(
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            scheduler=scheduler,
            max_steps=max_steps,
            warmup_steps=warmup_steps,
            sam_rho=sam_rho,
            sam_base=sam_base,
        )
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if loss_targets not in ("label", "raters"):
            raise ValueError(f"loss_targets {loss_targets!r} is not 'label' or 'raters'")
        self.loss_targets = loss_targets
        self.automatic_optimization = optimizer != "sam"
        self.gradient_clip_val = gradient_clip_val  # applied by hand under SAM's manual optimisation
        self.sw_batch_size = sw_batch_size
        self.sw_overlap = sw_overlap
        parse_postprocess(postprocess)  # ValueError on a bad value
        if tta not in ("none", "flip"):
            raise ValueError(f"tta {tta!r} is not 'none' or 'flip'")
        self.tta = tta
        self.postprocess = postprocess
        self.infer_seconds = 0.0
        self.schedule_steps: int | None = None
        self._val_dice: list[float] = []
        self.scheme = scheme if scheme is not None else SupervisedScheme()
        self.scheme.attach(net, num_classes=num_classes, spatial_dims=len(self.roi_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """``x (B, in_channels, *spatial)`` -> network output (logits or dict)."""
        return self.net(x)

    def _target(self, batch: dict[str, Any]) -> torch.Tensor:
        """``(B, 1, *spatial)`` labels, or ``(B, R, *spatial)`` every rater's for a multi-rater loss."""
        if self.loss_targets == "label":
            return batch["label"]
        keys = sorted(k for k in batch if k.startswith("label_"))
        if not keys:
            raise ValueError("a multi-rater loss needs the batch's label_<rater> keys (multi_rater=True)")
        return torch.cat([batch[k] for k in keys], dim=1)

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """Training loss of one batch, the scalar ``training_step`` minimises: the scheme's
        (``scheme.loss``; for ``supervised`` :meth:`training_loss_supervised`)."""
        return self.scheme.loss(self, batch)

    def training_outputs(self, batch: dict[str, Any]) -> Any:
        """The network's output on ``batch["image"]`` (given the target when the net takes it)."""
        image = batch["image"]
        if getattr(self.net, "takes_target", False):
            return self.net(image, self._target(batch))
        return self.net(image)

    def supervised_loss_of(self, out: Any, batch: dict[str, Any]) -> torch.Tensor:
        """The supervised loss of a network output ``out`` on ``batch``'s labels (see
        :meth:`training_loss_supervised`)."""
        target = self._target(batch)
        if self.loss_targets == "raters" and isinstance(out, dict) and "samples" in out:
            loss = self.loss_fn(out["samples"], target)
        else:
            loss = supervised_loss(self.net, self.loss_fn, out, target)
        if hasattr(self.net, "aux_loss"):
            loss = loss + self.net.aux_loss(out, batch)
        return loss

    def training_loss_supervised(self, batch: dict[str, Any]) -> torch.Tensor:
        """The supervised training loss of one batch (the ``supervised`` scheme).

        The loss on the network's logits and, for a deeply supervised network, on its side
        outputs (:func:`models.deep_supervision.supervised_loss`) or, for a multi-rater loss and a
        probabilistic net, on its samples; plus the network's own ``aux_loss``.

        Args:
            batch: ``image (B, in_channels, *patch)`` float and ``label (B, 1, *patch)`` int64
                (or every rater's ``label_<name>`` for a multi-rater loss).
        """
        return self.supervised_loss_of(self.training_outputs(batch), batch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimiser step on ``batch`` (two passes under SAM); logs ``train_loss``."""
        if self.automatic_optimization:
            loss = self.training_loss(batch)
        else:  # SAM: gradient at w, climb to w + e(w), gradient there, step from w (one Lightning step)
            opt = self.optimizers()
            clip = self.gradient_clip_val

            def closure() -> torch.Tensor:
                opt.zero_grad()
                value = self.training_loss(batch)
                self.manual_backward(value)
                if clip:
                    self.clip_gradients(opt, gradient_clip_val=clip)
                return value

            loss = opt.step(closure=closure)
            self.lr_schedulers().step()
        if not torch.isfinite(loss):  # stop a diverged run here, with the step, not at evaluation
            raise FloatingPointError(f"training loss became {float(loss)} at step {self.global_step}")
        if self._logging_step():
            size = batch["image"].shape[0]
            self.log("train_loss", loss, prog_bar=True, batch_size=size)
            for key, value in self.scheme.log_values().items():
                self.log(f"train_{key}", value, batch_size=size)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After every optimiser step: the scheme's update (e.g. its EMA teacher)."""
        self.scheme.after_step(self)

    def _logging_step(self) -> bool:
        """Whether the loggers write at this step (``trainer.log_every_n_steps``).

        ``self.log`` costs about a millisecond of Lightning's bookkeeping per call, a tenth of a
        small CPU step, and on the other steps its value would be dropped by the loggers anyway.
        """
        trainer = self._trainer
        if trainer is None:
            return True
        return (self.global_step + 1) % max(int(trainer.log_every_n_steps), 1) == 0 or trainer.should_stop

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

    @torch.no_grad()
    def predict_output(self, image: torch.Tensor, key: str) -> torch.Tensor | None:
        """Whole-case map ``(B, *spatial)`` of the network's extra per-voxel output ``key`` (e.g.
        MaskFormer's ``"ood"``), by the same sliding windows and Gaussian blending as
        :meth:`predict_logits`; ``None`` when the network's forward gives no such output (read
        from one window of zeros, once)."""
        if self._output_keys is None:
            out = self.net(image.new_zeros((1, image.shape[1], *self.roi_size)))
            self._output_keys = frozenset(out) if isinstance(out, dict) else frozenset()
        if key not in self._output_keys:
            return None
        blended = sliding_window_inference(
            image,
            roi_size=self.roi_size,
            sw_batch_size=self.sw_batch_size,
            predictor=lambda x: self.net(x)[key].unsqueeze(1).float(),
            overlap=self.sw_overlap,
            mode="gaussian",
        )
        return blended[:, 0]

    def on_validation_epoch_start(self) -> None:
        """Starts a new list of per-case validation Dice values."""
        self._val_dice = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Sliding-window logits of one whole case: ``val_loss`` and the case's Dice (the network's
        input is the scheme's ``val_input``: the image, or for ``interactive`` image ⊕ one click)."""
        logits = self.predict_logits(self.scheme.val_input(batch))
        label = batch["label"]
        if self.loss_targets == "label":
            self.log("val_loss", self.loss_fn(logits, label), sync_dist=True, batch_size=1)
        labels = label[:, 0].long()
        pred = logits.argmax(1)
        fov = batch.get("fov")
        if fov is not None:  # outside the field of view both are background, as in the records
            inside = fov[:, 0].bool()
            labels = torch.where(inside, labels, 0)
            pred = torch.where(inside, pred, 0)
        acc = DiceAccumulator()
        acc.update(
            F.one_hot(pred, self.num_classes).movedim(-1, 1)[:, 1:],
            F.one_hot(labels, self.num_classes).movedim(-1, 1)[:, 1:],
        )
        per_class = acc.compute()  # (B, C-1), NaN where both masks are empty
        for row in per_class:
            defined = row[~torch.isnan(row)]
            self._val_dice.append(float(defined.mean()) if defined.numel() else float("nan"))

    def on_validation_epoch_end(self) -> None:
        """Logs ``val_dice``: the case Dice values of every rank, reduced."""
        values = self._val_dice
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        if self.trainer.world_size > 1 and dist:
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, values)
            values = [v for part in gathered for v in part]
        self.log("val_dice", reduce_values(values)["mean"], prog_bar=True)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Returns the case's probabilities (after ``tta``) and, with ``postprocess``, its
        post-processed label map for the metrics callback.

        Returns:
            ``prob (C, *spatial)`` float32 on CPU, ``pred (*spatial)`` int64 on CPU (the
            post-processed argmax; None when ``postprocess`` is ``none``: the argmax of ``prob``
            is the prediction), ``label (*spatial)``, ``fov`` or None, ``case_id`` and ``spacing``.
            A scheme with its own test protocol (``scheme.test_case`` not None, e.g. ``interactive``)
            gives ``prob`` (``tta`` is not applied) and further keys, passed on as they are
            (``protocol_metrics``: per-case metrics the callback adds to the row).
        """
        start = time.perf_counter()
        own = self.scheme.test_case(self, batch)  # a scheme's own protocol (``interactive``: clicks)
        extra = {} if own is None else {k: v for k, v in own.items() if k != "prob"}
        if own is None:
            prob = tta_probabilities(self.predict_logits, batch["image"], self.tta)[0].cpu()
        else:
            prob = own["prob"]
        pred = None
        if self.postprocess != "none":
            pred = torch.from_numpy(postprocess(prob.argmax(0).numpy(), prob.shape[0], self.postprocess))
        self.infer_seconds += time.perf_counter() - start
        fov = batch.get("fov")
        return {
            "prob": prob,
            "pred": pred,
            "label": batch["label"][0, 0].cpu(),
            "fov": None if fov is None else fov[0, 0].cpu(),
            "case_id": batch["case_id"][0],
            "spacing": _first(batch.get("spacing")),
            **extra,
        }

    def configure_optimizers(self) -> Any:
        """The optimiser of ``optimizer`` (network, learnable loss weights and trainable scheme
        parameters, the last two without weight decay) and the per-step
        schedule, whose length is ``max_steps`` or, for an epoch budget, the Trainer's estimate."""
        o = self.optim
        net_params = [p for p in self.net.parameters() if p.requires_grad]
        loss_params = [p for p in self.loss_fn.parameters() if p.requires_grad]
        loss_params += [p for p in self.scheme.parameters() if p.requires_grad]  # e.g. a discriminator
        params: list[Any] = net_params
        if loss_params:  # learned loss weights, scheme parameters: no weight decay
            params = [{"params": net_params}, {"params": loss_params, "weight_decay": 0.0}]
        opt = OPTIMIZERS[o["optimizer"]](params, o)
        total = int(o["max_steps"])
        if total <= 0:
            total = int(self.trainer.estimated_stepping_batches)
        self.schedule_steps = total
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda({**o, "max_steps": total}))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _first(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value[0].tolist()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
        return [float(v[0]) for v in value]
    return value
