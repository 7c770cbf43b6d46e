"""The suite's own speed: ``segbench bench suite`` (or ``python -m bench.perf.suite``).

Three ratios, each against a reference measured in the same process run:

- **training overhead**: optimiser steps per second of the segbench runner (Lightning Trainer with
  the runner's callbacks: LR trace, resume checkpoints, CSV logger) against a bare PyTorch loop on
  the same network, loss, optimiser, schedule and batches; validation excluded. Target <= 5 %.
- **data pipeline**: samples per second of the synthetic DataModule's training loader at default
  settings against the rate at which one training step consumes them. The loader is the
  bottleneck when the ratio is below 1.
- **sweep cost**: the share of a sweep's wall time spent outside fit and test (setup, metrics,
  records), from the records of a results folder, plus the time to render their leaderboard.
  Target < 10 %.

Results go to ``results/perf/suite.json`` (``--out``) with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

_SWEEP: dict[str, Any] = {
    "name": "perf",
    "models": [{"name": "unet", "channels": [8, 16, 32]}],
    "losses": ["dice_ce"],
    "trainer": {"max_steps": 60, "check_val_every_n_epoch": 1000, "log_every_n_steps": 10},
    "data": {"batch_size": 4, "patch_size": [64, 64], "samples_per_epoch": 400},
}


class _Clock(L.Callback):
    """Wall time from the start of optimiser step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.end = time.perf_counter()


def training_overhead(steps: int = 60, warmup: int = 10) -> dict[str, float]:
    """Steps/s of the runner's Trainer and of a bare loop on the same run (same batches)."""
    from bench.callbacks import LRTraceCallback, ResumeCheckpoint
    from bench.config import sweep_from_dict
    from bench.runner import build_datamodule, build_module, build_trainer, resolve_run

    cfg = resolve_run(sweep_from_dict(_SWEEP).expand()[0])
    with tempfile.TemporaryDirectory() as tmp:
        L.seed_everything(0, verbose=False)
        dm = build_datamodule(cfg)
        dm.setup("fit")
        batches = [b for _, b in zip(range(steps), dm.train_dataloader(), strict=False)]

        # bare PyTorch: the same module's network, loss, optimiser and schedule
        module = build_module(cfg, dm)
        module.trainer = None
        conf = module.configure_optimizers()
        opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
        t0 = 0.0
        for i, batch in enumerate(batches):
            if i == warmup:
                t0 = time.perf_counter()
            opt.zero_grad()
            loss = module.loss_fn(module.net(batch["image"]), batch["label"])
            loss.backward()
            opt.step()
            sched.step()
        bare = (len(batches) - warmup) / (time.perf_counter() - t0)

        # the runner's Trainer with its callbacks, fed the same batches
        L.seed_everything(0, verbose=False)
        module = build_module(cfg, dm)
        clock = _Clock(warmup)
        callbacks = [clock, LRTraceCallback(), ResumeCheckpoint(Path(tmp) / "last.ckpt", every_n_steps=50)]
        trainer = build_trainer(cfg, Path(tmp), callbacks, [], progress=False)
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))  # the same batches
        runner = (steps - warmup) / (clock.end - (clock.start or clock.end))
    return {"bare_steps_per_s": bare, "runner_steps_per_s": runner, "overhead": bare / runner - 1.0}


def data_pipeline(n_batches: int = 40) -> dict[str, float]:
    """Samples/s of the default synthetic loader vs samples/s one training step consumes."""
    from bench.config import sweep_from_dict
    from bench.runner import build_datamodule, build_module, resolve_run

    cfg = resolve_run(sweep_from_dict(_SWEEP).expand()[0])
    dm = build_datamodule(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    t0, n = time.perf_counter(), 0
    for i, batch in enumerate(loader):
        n += batch["image"].shape[0]
        if i + 1 == n_batches:
            break
    load = n / (time.perf_counter() - t0)
    module = build_module(cfg, dm)
    opt = torch.optim.AdamW(module.net.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(10):
        opt.zero_grad()
        module.loss_fn(module.net(batch["image"]), batch["label"]).backward()
        opt.step()
    consume = 10 * batch["image"].shape[0] / (time.perf_counter() - t0)
    return {
        "loader_samples_per_s": load,
        "step_samples_per_s": consume,
        "ratio": load / consume,
        "num_workers": dm.num_workers,
    }


def sweep_cost(results: Path) -> dict[str, float]:
    """Share of wall time outside fit and test over the done train records of ``results``."""
    from bench.leaderboard import write_leaderboard
    from bench.store import scan_records

    records = [
        r for r in scan_records(results)[0] if r.get("kind", "train") == "train" and r.get("status") == "done"
    ]
    wall = inside = 0.0
    for r in records:
        span = (
            datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"])
        ).total_seconds()
        wall += span
        inside += r["train_seconds"] + r["test_seconds"]
    with tempfile.TemporaryDirectory() as tmp:  # a copy: rendering writes plots beside the records
        copy = Path(tmp) / "results"
        shutil.copytree(results, copy, ignore=shutil.ignore_patterns("plots", "report.html", ".*", "perf"))
        t0 = time.perf_counter()
        write_leaderboard(copy, Path(tmp) / "leaderboard.md", plots=True, report=True)
        render = time.perf_counter() - t0
    return {
        "runs": len(records),
        "wall_s": wall,
        "fit_and_test_s": inside,
        "leaderboard_s": render,
        "outside_share": (wall - inside + render) / (wall + render) if wall else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="segbench bench suite", description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="records whose sweep cost is measured")
    p.add_argument("--out", default="results/perf/suite.json")
    args = p.parse_args(argv)
    out = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
        "training_overhead": training_overhead(),
        "data_pipeline": data_pipeline(),
        "sweep_cost": sweep_cost(Path(args.results)),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    t, d, s = out["training_overhead"], out["data_pipeline"], out["sweep_cost"]
    print(
        f"training overhead: runner {t['runner_steps_per_s']:.2f} steps/s, "
        f"bare {t['bare_steps_per_s']:.2f} "
        f"-> {100 * t['overhead']:+.1f} % (target <= 5 %)"
    )
    print(
        f"data pipeline: loader {d['loader_samples_per_s']:.0f} samples/s, "
        f"step {d['step_samples_per_s']:.0f} "
        f"-> {d['ratio']:.2f}x (below 1: the loader is the bottleneck)"
    )
    print(
        f"sweep cost: {100 * s['outside_share']:.1f} % outside fit and test over {s['runs']} runs "
        f"(leaderboard {s['leaderboard_s']:.1f} s; target < 10 %)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
