"""The suite's own speed: ``segbench bench suite`` (or ``python -m bench.perf.suite``).

Three ratios, each against a reference measured in the same process run:

- **training overhead**: optimiser steps per second of the segbench runner (the Trainer, callbacks
  and logger that :func:`bench.run.build_run` builds) against a bare PyTorch loop on the same
  network, loss, optimiser, schedule and batches, both fed by the same ``DataLoader``; validation
  excluded. The run is the default sweep's first (U-Net, 4 x 64^2). A plain Lightning Trainer
  (no segbench callback, logger or checkpoint) is measured too, to split Lightning's own cost from
  segbench's. They alternate ``reps`` times (15: two runs of 5 with no change to the runner gave
  +5.0 % and +9.8 %; a single rep moves by up to 20 % on a noisy 2-core machine), in an order that
  rotates, and the best of each is compared (the machine's noise only ever slows a rep down).
  Target <= 5 %.
- **data pipeline**: for every DataModule whose data is here (the synthetic ones always, the real
  ones under ``--data-root``), samples per second of its training loader at default settings
  against the rate at which a step of the default sweep's U-Net consumes them, and the share of a
  step spent waiting for data with the default ``num_workers`` (0: loading is not overlapped).
- **sweep cost**: the default sweep run from scratch in a child process (``segbench run``, as the
  README's command, leaderboard included): its wall time and the share spent outside fit and
  inference (start-up, setup, metrics, records, leaderboard, exit). Target < 10 %.

Results go to ``results/perf/suite.json`` (``--out``) with the machine they came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from bench.config import RunConfig, load_sweep


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

    def steps_per_s(self, steps: int) -> float:
        """``steps`` (the steps after the warm-up) over the time measured."""
        return steps / (self.end - (self.start or self.end))


def default_run(steps: int) -> RunConfig:
    """The default sweep's first run with a ``steps`` budget and no validation."""
    cfg = load_sweep(None).expand()[0]
    trainer = dataclasses.replace(cfg.trainer, max_steps=steps, check_val_every_n_epoch=10**6)
    return dataclasses.replace(cfg, trainer=trainer)


def training_overhead(steps: int = 110, warmup: int = 10, reps: int = 15) -> dict[str, Any]:
    """Steps/s of the runner's Trainer and of a bare loop on the same run and batches (best of ``reps``)."""
    from bench.run import build_datamodule, build_module, build_run, resolve_run

    cfg = default_run(steps)
    resolved = resolve_run(cfg)
    dm = build_datamodule(resolved)
    dm.setup("fit")
    batches: list[dict[str, torch.Tensor]] = []
    while len(batches) < steps:
        batches += [b for _, b in zip(range(steps - len(batches)), dm.train_dataloader(), strict=False)]
    clip = resolved.trainer.gradient_clip_val

    def bare() -> float:
        L.seed_everything(cfg.seed, verbose=False)
        module = build_module(resolved, dm)
        conf = module.configure_optimizers()
        opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
        t0 = 0.0
        for i, batch in enumerate(DataLoader(batches, batch_size=None)):
            if i == warmup:
                t0 = time.perf_counter()
            opt.zero_grad()
            loss = module.loss_fn(module.net(batch["image"]), batch["label"])
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(module.net.parameters(), clip)
            opt.step()
            sched.step()
        return (steps - warmup) / (time.perf_counter() - t0)

    def runner() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            run = build_run(cfg, Path(tmp), progress=False)  # the runner's callbacks and logger
            clock = _Clock(warmup)
            run.trainer.callbacks.append(clock)
            run.trainer.fit(run.module, train_dataloaders=DataLoader(batches, batch_size=None))
            return clock.steps_per_s(steps - warmup)

    def lightning() -> float:  # Lightning's own loop: no segbench callback, logger or checkpoint
        L.seed_everything(cfg.seed, verbose=False)
        module = build_module(resolved, dm)
        clock = _Clock(warmup)
        trainer = L.Trainer(
            max_steps=steps,
            accelerator="cpu",
            devices=1,
            logger=False,
            callbacks=[clock],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            gradient_clip_val=clip,
        )
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
        return clock.steps_per_s(steps - warmup)

    reps_of: dict[str, list[float]] = {"bare": [], "lightning": [], "runner": []}
    order = [("bare", bare), ("lightning", lightning), ("runner", runner)]
    for i in range(reps):  # the order rotates, so that none of the three always runs first
        for name, fn in order[i % 3 :] + order[: i % 3]:
            reps_of[name].append(fn())
    b, lt, r = (max(reps_of[k]) for k in ("bare", "lightning", "runner"))
    return {
        "run": cfg.run_id,
        "steps_timed": steps - warmup,
        "bare_steps_per_s": b,
        "lightning_steps_per_s": lt,
        "runner_steps_per_s": r,
        "overhead": b / r - 1.0,
        "lightning_share": b / lt - 1.0,
        "reps": reps_of,
    }


def _loader_rate(dm: Any, n_batches: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Samples/s of ``dm``'s training loader over ``n_batches`` after a first one; the last batch."""
    it = iter(dm.train_dataloader())
    batch = next(it)
    t0, n = time.perf_counter(), 0
    for _ in range(n_batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(dm.train_dataloader())
            batch = next(it)
        n += batch["image"].shape[0]
    return n / (time.perf_counter() - t0), batch


def data_pipeline(data_root: Path | None, n_batches: int = 20) -> dict[str, Any]:
    """Per DataModule: loader samples/s vs the default U-Net's consumption, and the waiting share.

    Each DataModule is built as the runner builds it for a run with segbench's default ``data``
    settings (batch 4, flip and rot90 augmentation, foreground oversampling, ``num_workers: 0``)
    and the dataset's own default patch size.
    """
    from bench.config import ComponentSpec
    from bench.run import build_datamodule, build_module, resolve_run
    from datamodules.registry import DATASETS

    base = default_run(10)
    out: dict[str, Any] = {}
    for entry in DATASETS:
        if entry.meta.get("needs_root"):  # declared by files a user points at (nnunet_raw, image_folder)
            out[entry.name] = {"skipped": "a generic reader: no dataset of its own"}
            continue
        folder = getattr(entry.factory, "folder", "")
        kwargs: dict[str, Any] = {}
        if folder:
            if data_root is None or not (data_root / folder).is_dir():
                where = data_root / folder if data_root else "(no --data-root)"
                out[entry.name] = {"skipped": f"no data at {where}"}
                continue
            kwargs = {"root": str(data_root / folder), "download": False}
        cfg = resolve_run(
            dataclasses.replace(
                base,
                dataset=ComponentSpec(entry.name, kwargs),
                data=dataclasses.replace(base.data, patch_size=None),
            )
        )
        t0 = time.perf_counter()
        dm = build_datamodule(cfg)
        dm.setup("fit")
        setup_s = time.perf_counter() - t0
        load, batch = _loader_rate(dm, n_batches)
        L.seed_everything(0, verbose=False)
        module = build_module(cfg, dm)
        opt = torch.optim.AdamW(module.net.parameters(), lr=1e-3)
        for i in range(6):  # one warm-up step, five timed
            if i == 1:
                t0 = time.perf_counter()
            opt.zero_grad()
            module.loss_fn(module.net(batch["image"]), batch["label"]).backward()
            opt.step()
        consume = 5 * batch["image"].shape[0] / (time.perf_counter() - t0)
        out[entry.name] = {
            "patch_size": list(dm.patch_size),
            "batch_size": int(batch["image"].shape[0]),
            "augment": dict(cfg.data.augment),
            "num_workers": dm.num_workers,
            "setup_s": setup_s,
            "loader_samples_per_s": load,
            "step_samples_per_s": consume,
            "ratio": load / consume,
            "waiting_share": (1 / load) / (1 / load + 1 / consume),
        }
        print(f"  {entry.name}: loader {load:.0f} vs step {consume:.0f} samples/s", flush=True)
    return out


def cost_shares(records: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """Where a sweep's wall time went, from its records.

    ``fit_s`` sums ``train_seconds`` (``trainer.fit``, Lightning's own set-up included),
    ``test_s`` sums ``test_seconds`` (``trainer.test``: inference, per-case metrics, saved
    predictions) and ``inference_s`` sums ``infer_seconds`` (the sliding-window forward passes
    alone). ``outside_share`` counts everything but fit and inference as outside, metrics
    included, as the target does; ``outside_share_test_inside`` is the looser figure that counts
    all of ``trainer.test`` as inside.
    """
    fit = sum(r.get("train_seconds") or 0.0 for r in records)
    test = sum(r.get("test_seconds") or 0.0 for r in records)
    infer = sum(r.get("infer_seconds") or 0.0 for r in records)
    return {
        "runs": len(records),
        "failed": sum(r.get("status") != "done" for r in records),
        "wall_s": wall,
        "fit_s": fit,
        "test_s": test,
        "inference_s": infer,
        "outside_share": (wall - fit - infer) / wall,
        "outside_share_test_inside": (wall - fit - test) / wall,
    }


# what `segbench run` imports before and while it works: the CLI, the runner and the leaderboard
_IMPORTS = "import bench.cli.app, bench.run, bench.leaderboard"


def _child_seconds(code: str) -> float:
    """Seconds a timed block took in a fresh interpreter (``code`` prints them)."""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def _sweep_once() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        cmd = [sys.executable, "-m", "bench.cli", "run", "--results", str(results), "--quiet"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        records = [json.loads(p.read_text()) for p in results.glob("*.json")]
        imports = _child_seconds(
            f"import time; t = time.perf_counter(); {_IMPORTS}; print(time.perf_counter() - t)"
        )
        render = f"write_board(Path({str(results)!r}), Path({str(Path(tmp) / 'lb.md')!r}))"
        board = _child_seconds(
            f"import time; from pathlib import Path; {_IMPORTS}; from bench.cli.common import write_board; "
            f"t = time.perf_counter(); {render}; print(time.perf_counter() - t)"
        )
    return {**cost_shares(records, wall), "imports_s": imports, "leaderboard_s": board}


def sweep_cost(reps: int = 3) -> dict[str, Any]:
    """The default sweep from scratch in a child process, ``reps`` times: wall time, share outside
    fit and inference (:func:`cost_shares`), and two parts of the outside measured again in fresh
    interpreters (the imports of ``segbench run``, rendering its leaderboard). The median rep by
    share is the figure; every rep is kept (the machine's noise moves both parts)."""
    runs = []
    for i in range(reps):
        runs.append(_sweep_once())
        print(
            f"  rep {i + 1}: {runs[-1]['wall_s']:.1f} s, {100 * runs[-1]['outside_share']:.1f} % outside",
            flush=True,
        )
    median = sorted(runs, key=lambda r: r["outside_share"])[len(runs) // 2]
    return {**median, "reps": runs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="segbench bench suite", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/perf/suite.json")
    p.add_argument(
        "--data-root",
        default=os.environ.get("SEGBENCH_SHARED_DATA", "../shared/data"),
        help="folder of the real datasets' folders (default $SEGBENCH_SHARED_DATA or ../shared/data)",
    )
    p.add_argument("--reps", type=int, default=15, help="alternating repetitions of the overhead trio")
    p.add_argument(
        "--sweep-reps", type=int, default=3, help="runs of the default sweep (median reported; 0 skips it)"
    )
    args = p.parse_args(argv)
    root = Path(args.data_root)
    print("training overhead ...", flush=True)
    overhead = training_overhead(reps=args.reps)
    print("data pipeline ...", flush=True)
    pipeline = data_pipeline(root if root.is_dir() else None)
    if args.sweep_reps < 0 or args.reps < 1:
        p.error("--reps must be >= 1 and --sweep-reps >= 0")
    cost: dict[str, Any] = {"skipped": "--sweep-reps 0"}
    if args.sweep_reps:
        print("sweep cost (the default sweep) ...", flush=True)
        cost = sweep_cost(args.sweep_reps)
    out = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
        "training_overhead": overhead,
        "data_pipeline": pipeline,
        "sweep_cost": cost,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    t = overhead
    print(
        f"training overhead: runner {t['runner_steps_per_s']:.2f} steps/s, bare {t['bare_steps_per_s']:.2f} "
        f"(best of {args.reps}) -> {100 * t['overhead']:+.1f} % (target <= 5 %); Lightning's own loop "
        f"alone: {t['lightning_steps_per_s']:.2f} steps/s ({100 * t['lightning_share']:+.1f} %)"
    )
    for name, d in pipeline.items():
        if "skipped" in d:
            print(f"data pipeline {name}: skipped ({d['skipped']})")
        else:
            print(
                f"data pipeline {name}: loader {d['loader_samples_per_s']:.0f} samples/s, step "
                f"{d['step_samples_per_s']:.0f} -> {d['ratio']:.2f}x, {100 * d['waiting_share']:.0f} % of a "
                f"step waiting with num_workers={d['num_workers']}"
            )
    if "skipped" in cost:
        print(f"sweep cost: skipped ({cost['skipped']})")
        return 0
    shares = ", ".join(f"{100 * r['outside_share']:.1f}" for r in cost["reps"])
    print(
        f"sweep cost: the default sweep ({cost['runs']} runs) took {cost['wall_s']:.1f} s (median of "
        f"{len(cost['reps'])} by share: {shares} %), "
        f"{100 * cost['outside_share']:.1f} % outside fit and inference (target < 10 %; of it imports "
        f"{cost['imports_s']:.1f} s, leaderboard {cost['leaderboard_s']:.1f} s); "
        f"{100 * cost['outside_share_test_inside']:.1f} % with all of trainer.test counted inside"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
