"""Experiment tracking with Weights & Biases through Lightning's ``WandbLogger``.

What a tracked run holds: the resolved config (``wandb.config``), the per-epoch curves Lightning
logs (``train_loss``, ``val_loss``, ``val_dice``), the per-case test metrics as a
``wandb.Table`` (``cases``), the aggregate means in the run summary (``test/<metric>``), a few
qualitative overlays (image with label and prediction masks) and the run record as an artifact.
Runs of one sweep share a ``group`` (the sweep name; the study name for Optuna trials).

Network: nothing goes online unless an API key is configured. The mode is, in order: the
``WANDB_MODE`` environment variable if set, ``online`` when ``WANDB_API_KEY`` is set or
``~/.netrc`` holds a key for the wandb host, otherwise ``offline`` (runs are written under
``$WANDB_DIR`` or the run's work folder and can be uploaded later with ``wandb sync``).
"""

from __future__ import annotations

import json
import math
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from bench.config import RunConfig, TrackingConfig
from bench.records import Record

_DEFAULT_HOST = "https://api.wandb.ai"


def has_api_key() -> bool:
    """True when a wandb API key is configured (``WANDB_API_KEY`` or a netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", _DEFAULT_HOST)).hostname or ""
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    """``WANDB_MODE`` if set, else ``online`` with an API key, else ``offline``."""
    return os.environ.get("WANDB_MODE") or ("online" if has_api_key() else "offline")


def wandb_logger(
    cfg: RunConfig,
    tracking: TrackingConfig,
    work_dir: Path,
    *,
    name: str | None = None,
    group: str | None = None,
    job_type: str = "run",
) -> Any:
    """A Lightning ``WandbLogger`` for one run (a new wandb run; a previous one is finished).

    Args:
        cfg: the run's config, stored as ``wandb.config``.
        tracking: project / entity settings.
        work_dir: the run's work folder; wandb files go to ``$WANDB_DIR`` or ``work_dir``.
        name: run name (default: ``cfg.run_id``).
        group: wandb group (default: the sweep name).
        job_type: ``run`` for benchmark runs, ``trial`` for Optuna trials.
    """
    from lightning.pytorch.loggers import WandbLogger

    save_dir = Path(os.environ.get("WANDB_DIR") or work_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    mode = wandb_mode()
    return WandbLogger(
        name=name or cfg.run_id,
        save_dir=str(save_dir),
        project=tracking.project,
        entity=tracking.entity,
        group=group or cfg.sweep,
        job_type=job_type,
        config=cfg.to_dict(),
        mode=mode,
        reinit="finish_previous",
        settings={"silent": True, "console": "off", "x_disable_stats": True},
        tags=[cfg.dataset.name, cfg.model.name, cfg.loss.name],
    )


def _finite(value: Any) -> Any:
    """NaN / inf -> None: a wandb column keeps one type (exact values are in the record artifact)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def log_record(logger: Any, record: Record, examples: list[dict[str, Any]] | None = None) -> None:
    """Log a finished run: per-case table, aggregate means, overlays and the record artifact.

    ``examples``: overlays of :class:`~bench.run.callbacks.CaseMetricsCallback` (``image``,
    ``label``, ``pred`` 2D arrays and ``case_id``).
    """
    import wandb

    run = logger.experiment
    rows = record.cases
    if rows:
        columns = list(rows[0])
        logger.log_table(
            key="cases", columns=columns, data=[[_finite(r.get(c)) for c in columns] for r in rows]
        )
    summary = {f"test/{k}": v["mean"] for k, v in record.aggregates.items()}
    timings = {
        "train_seconds": record.train_seconds,
        "test_seconds": record.test_seconds,
        "steps": record.steps,
    }
    summary.update({k: v for k, v in timings.items() if v is not None})
    run.summary.update({k: _finite(v) for k, v in summary.items()})
    if examples:
        run.log({"overlays": [_overlay(e) for e in examples]})
    path = Path(run.dir) / "record.json"
    path.write_text(json.dumps(record.to_dict(), indent=1, default=str))
    artifact = wandb.Artifact(f"record-{record.config_hash}", type="run-record")
    artifact.add_file(str(path))
    run.log_artifact(artifact)


def _overlay(example: dict[str, Any]) -> Any:
    """``image (*spatial)``, ``label``, ``pred`` -> a ``wandb.Image`` with two mask layers."""
    import wandb

    image = np.asarray(example["image"], dtype=float)
    lo, hi = float(image.min()), float(image.max())
    image = (255 * (image - lo) / max(hi - lo, 1e-8)).astype(np.uint8)
    return wandb.Image(
        image,
        caption=str(example["case_id"]),
        masks={
            "label": {"mask_data": np.asarray(example["label"], dtype=np.uint8)},
            "prediction": {"mask_data": np.asarray(example["pred"], dtype=np.uint8)},
        },
    )


def finish(logger: Any, failed: bool = False) -> None:
    """Close the wandb run of ``logger`` (exit code 1 marks it failed)."""
    run = getattr(logger, "_experiment", None)
    if run is not None:
        run.finish(exit_code=1 if failed else 0)
