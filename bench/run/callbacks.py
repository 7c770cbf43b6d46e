"""Lightning callbacks of the runner: per-case test metrics (gathered once under DDP), the
learning-rate trace, the training clock, the resume checkpoint, and the fault-injection points
used by the tests."""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from bench.faults import fault_point
from bench.metrics import MetricSettings, case_row
from bench.records.predictions import prediction_arrays, prediction_ref, write_prediction
from bench.records.record import constant_kind, degenerate_state
from models.inference import postprocess


class LRTraceCallback(L.Callback):
    """Records ``[step, lr]`` of the first parameter group at every validation (kept across resume)."""

    def __init__(self) -> None:
        self.trace: list[list[float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.optimizers:
            return
        lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        if not self.trace or self.trace[-1][0] != trainer.global_step:
            self.trace.append([int(trainer.global_step), lr])

    def state_dict(self) -> dict[str, Any]:
        return {"trace": self.trace}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.trace = [list(x) for x in state_dict.get("trace", [])]


class TrainClock(L.Callback):
    """Wall seconds of training over every attempt of a run, kept across resume in the checkpoint.

    Each checkpoint stores the seconds spent in ``fit`` up to it (the earlier attempts' stored
    seconds plus this attempt's so far), so a resumed run counts the training that produced its
    weights, and not the work a killed attempt lost after its last checkpoint. :meth:`total` is
    ``None`` for a run resumed from a checkpoint that carries no clock (written before segbench
    kept one): its earlier seconds are unknown.
    """

    def __init__(self) -> None:
        self.before = 0.0  # seconds of the earlier attempts, up to the checkpoint resumed from
        self.loaded = False
        self._start: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        now = time.perf_counter() - self._start if self._start is not None else 0.0
        return {"seconds": self.before + now}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict["seconds"])
        self.loaded = True

    def total(self, this_attempt: float, resumed: bool) -> float | None:
        """Seconds of training over every attempt, given this attempt's ``fit`` seconds."""
        if resumed and not self.loaded:
            return None
        return self.before + this_attempt


def validation_follows(trainer: L.Trainer) -> bool:
    """True when Lightning validates right after the training batch that just ended (its own rule:
    the step or epoch cadence, the last step, a requested stop); read in ``on_train_batch_end``.

    False when this Lightning does not expose the rule (the checkpoint is then written before
    the validation, as it always was).
    """
    loop = trainer.fit_loop.epoch_loop
    check = getattr(loop, "_should_check_val_fx", None)
    if not trainer.enable_validation or check is None or getattr(loop, "_skip_next_val", False):
        return False
    try:
        return bool(check(trainer.fit_loop._data_fetcher))
    except (AttributeError, TypeError):
        return False


class ResumeCheckpoint(L.Callback):
    """Writes ``path`` (one Lightning checkpoint, replaced atomically) at every validation and every
    ``every_n_steps`` optimiser steps, and carries the Python / NumPy / torch RNG states, so that a
    resumed run continues exactly where the killed one stopped.

    A step that a validation follows is written after that validation, not before it: a run
    killed during the validation then resumes before the step, trains it again and validates it,
    so that no point of the learning curve (``val_trace``) is lost, the last one included.
    Lightning's own checkpoint holds the model, optimiser, scheduler and loop state; the RNG
    states ride along in this callback's state.
    """

    def __init__(self, path: Path, *, every_n_steps: int) -> None:
        self.path = Path(path)
        self.every_n_steps = int(every_n_steps)
        self._last_saved = -1

    def _save(self, trainer: L.Trainer, *, again: bool = False) -> None:
        """Write the checkpoint, once per step unless ``again`` (a validation that ran after the
        step's checkpoint: its point of the learning curve must be in the checkpoint too)."""
        if (trainer.global_step == self._last_saved and not again) or trainer.sanity_checking:
            return
        self._last_saved = trainer.global_step
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp, weights_only=False)  # the full state (Lightning logs the default)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        fault_point("checkpoint", trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        fault_point("step", trainer.global_step)
        if trainer.global_step % self.every_n_steps == 0 and not validation_follows(trainer):
            self._save(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            fault_point("validation", trainer.global_step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._save(trainer, again=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)  # a run killed during the test resumes with nothing left to train

    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        return {  # plain types and tensors: loadable with torch.load(weights_only=True)
            "python": [version, list(internal), gauss],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_rng = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = getattr(self, "_pending_rng", None)
        if not state:
            return
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and torch.cuda.is_available():
            with contextlib.suppress(RuntimeError):
                torch.cuda.set_rng_state_all(state["cuda"])
        self._pending_rng = None


def _middle_slice(array: np.ndarray, spatial_dims: int) -> np.ndarray:
    """``(*spatial)`` -> a 2D view: the array itself in 2D, the middle slice of the last axis in 3D."""
    return array if spatial_dims == 2 else array[..., array.shape[-1] // 2]


def _protocol_metrics(outputs: Any) -> dict[str, float]:
    """The per-case metrics of a scheme's own test protocol (``outputs["protocol_metrics"]``,
    e.g. ``noc85``, ``dice_at_1`` of ``interactive``), as floats; ``{}`` for an ordinary run."""
    return {str(k): float(v) for k, v in (outputs.get("protocol_metrics") or {}).items()}


class CaseMetricsCallback(L.Callback):
    """Computes ``bench.metrics.case_metrics`` for every test case and keeps the rows.

    The module's ``test_step`` returns the case's probabilities; the metrics are computed here,
    outside the step, by the one metrics implementation. With ``eval.postprocess`` it also returns
    the post-processed label map (``pred``): the row's metrics are then those of that map (``ece``
    and ``brier`` those of the probabilities) and ``raw`` holds the metrics of the plain argmax.

    Preprocessed data (a DataModule whose ``maps_back`` is true: ``spacing`` or ``orientation``,
    ``docs/preprocessing.md``): the probabilities are first mapped back to the file's grid
    (``trainer.datamodule.to_original``), and every metric is computed there, against the label
    file at the file's spacing; the prediction is the argmax of the mapped probabilities, and
    ``eval.postprocess`` (the module's ``postprocess``) is applied to that argmax (the step's own
    post-processed map, on the preprocessed grid, is not used). Saved files and examples hold
    the file's grid too (the image mapped back linearly).

    It also notes, per case, whether the prediction (its argmax, inside the field of view when
    there is one) is constant (:func:`bench.records.record.constant_kind`); ``degenerate`` is then
    the record's ``degenerate`` field (``{kind, cases}`` when more than half of the cases are
    constant, else ``{}``).

    DDP: Lightning's distributed sampler gives each rank its share of the cases (repeating a
    case to even out ranks). Each rank evaluates its own cases; at the end of the test epoch the
    rows and the constant-prediction notes are gathered once with ``all_gather_object`` (every rank
    then holds all rows, deduplicated by ``case_id`` and sorted), so global rank 0 can write the
    one record.

    A scheme with its own test protocol (``TrainingScheme.test_case``; ``interactive``) gives
    ``protocol_metrics`` with each case (``noc85``, ``noc90``, ``dice_at_1/3/5``): they are added
    to the case's row as they are (computed on the grid the module predicted on, before any
    mapping back). Its ``dice_per_click`` curve is kept in ``curves`` (``{case_id: [Dice after
    click 1, 2, ...]}``), not in the row: a row holds numbers.

    Args:
        settings: the metric settings (the run's ``eval`` section, :meth:`EvalConfig.metric_settings`).
        examples: keep this many cases (this rank's first ones) as 2D overlays for tracking:
            ``image (H, W)`` (first channel; middle slice in 3D), ``label``, ``pred`` and ``case_id``.
        save_dir: ``<results>/predictions/<run_id>``: where the prediction files go
            (:mod:`bench.records.predictions`); None saves nothing.
        save_ids: the case ids whose predictions are saved.
        save_probabilities: keep ``prob (C, *spatial)`` float16 in those files.
    """

    def __init__(
        self,
        *,
        settings: MetricSettings | None = None,
        examples: int = 0,
        save_dir: Path | None = None,
        save_ids: set[str] | None = None,
        save_probabilities: bool = False,
    ) -> None:
        self.settings = settings or MetricSettings()
        self.num_examples = examples
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.save_ids = set(save_ids or ())
        self.save_probabilities = save_probabilities
        self.rows: list[dict[str, Any]] = []
        self.examples: list[dict[str, Any]] = []
        self.saved: dict[str, str] = {}
        self.constant: dict[str, str | None] = {}
        self.degenerate: dict[str, Any] = {}
        self.curves: dict[str, list[float]] = {}

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []
        self.examples = []
        self.saved = {}
        self.constant = {}
        self.degenerate = {}
        self.curves = {}

    def _save(
        self,
        case_id: str,
        image: np.ndarray,
        label: np.ndarray,
        prob: np.ndarray,
        pred: np.ndarray,
        fov: np.ndarray | None,
        spacing: Any,
    ) -> None:
        """``<save_dir>/<case_id>.npz`` (:mod:`bench.records.predictions`); ``prob`` kept with
        ``save_probabilities``."""
        assert self.save_dir is not None
        arrays = prediction_arrays(
            label,
            pred=pred,
            prob=prob if self.save_probabilities else None,
            image=image,
            fov=fov,
            spacing=spacing,
        )
        write_prediction(self.save_dir / f"{case_id}.npz", arrays)
        self.saved[case_id] = prediction_ref(self.save_dir.name, case_id)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        case_id = outputs["case_id"]
        fov = outputs["fov"]
        prob = outputs["prob"].numpy()
        label = outputs["label"].numpy()
        fov_mask = None if fov is None else fov.numpy().astype(bool)
        spacing = outputs["spacing"]
        pp = outputs.get("pred")
        dm = getattr(trainer, "datamodule", None)
        mapped = bool(getattr(dm, "maps_back", False))
        if mapped:  # preprocessed grid: probabilities -> file's grid -> argmax -> post-processing
            prob, label, spacing, fov_mask = dm.to_original(case_id, prob)
            fov = None if fov_mask is None else torch.from_numpy(fov_mask)
            spacing = list(spacing)
            how = str(getattr(pl_module, "postprocess", "none"))
            pp = None if how == "none" else torch.from_numpy(postprocess(prob.argmax(0), prob.shape[0], how))
        # with post-processing, the post-processed label map's metrics and the raw ones under "raw"
        post = None if pp is None else pp.numpy()
        row = case_row(prob, label, post, spacing=spacing, fov=fov_mask, settings=self.settings)
        # a scheme's own test protocol (``interactive``): its per-case metrics join the row
        self.rows.append({"case_id": case_id, **row, **_protocol_metrics(outputs)})
        if outputs.get("dice_per_click") is not None:
            self.curves[case_id] = [float(v) for v in outputs["dice_per_click"]]
        pred = prob.argmax(0) if post is None else post
        self.constant[case_id] = constant_kind(pred, prob.shape[0], fov_mask)
        want_image = (self.save_dir is not None and case_id in self.save_ids) or (
            len(self.examples) < self.num_examples
        )
        full = batch["image"][0].detach().cpu().float().numpy() if want_image else None
        if mapped and full is not None:  # the input image on the file's grid, as the label
            full = dm.map_back(case_id, full)
        if self.save_dir is not None and case_id in self.save_ids:
            self._save(
                case_id,
                full,
                label,
                prob,
                pred,
                None if fov is None else fov.numpy(),
                spacing,
            )
        if len(self.examples) < self.num_examples:
            dims = label.ndim
            image = full[0]
            self.examples.append(
                {
                    "case_id": outputs["case_id"],
                    "image": _middle_slice(image, dims),
                    "label": _middle_slice(label, dims),
                    "pred": _middle_slice(pred, dims),
                }
            )

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (self.rows, self.saved, self.constant, self.curves))
            rows = [row for rank_rows, *_ in gathered for row in rank_rows]
            self.saved = {k: v for _, saved, _, _ in gathered for k, v in saved.items()}
            self.constant = {k: v for _, _, constant, _ in gathered for k, v in constant.items()}
            self.curves = {k: v for *_, curves in gathered for k, v in curves.items()}
        else:
            rows = self.rows
        seen: dict[str, dict[str, Any]] = {}
        for row in rows:  # the distributed sampler may repeat a case to even out ranks
            seen.setdefault(row["case_id"], row)
        self.rows = [seen[k] for k in sorted(seen)]
        self.saved = dict(sorted(self.saved.items()))
        self.curves = dict(sorted(self.curves.items()))
        self.degenerate = degenerate_state({k: self.constant.get(k) for k in seen})
