"""Speed of rendering the leaderboard on synthetic records (not a test).

Run ``python -m bench.perf.leaderboard [--sizes 100 400 1600] [--out FILE]`` (or ``segbench bench
leaderboard``). For each size it writes that many synthetic run records (JSON files laid out like
real ones, nothing trained: :func:`synthetic_records`) into a temporary results folder and times
three Markdown renders without figures (``write_leaderboard(..., plots=False, report=False)``), each
the best of ``--repeat`` timings (default 1):

- **cold**: an empty analysis cache, every table computed;
- **warm**: the same records again, every table read back from the cache;
- **incremental**: after one record changed (one case value), only its table recomputed.

It prints the seconds, the ratios time(400) / time(100) and time(1600) / time(400) of each next to
the ratio of records (4; a ratio near it is linear growth), and writes them as JSON to
``results/perf/leaderboard.json`` (``--out``). Issue 24 asks for <= 10 s at 1,600 records on two
cores and growth no worse than linear.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import run_from_dict
from bench.leaderboard.board import write_leaderboard
from bench.leaderboard.cache import AnalysisCache
from bench.leaderboard.rows import group_records
from bench.records.identity import hash_config
from bench.records.record import RECORD_SCHEMA, Record
from bench.records.store import record_path, write_json_atomic

TABLES = (("drive", 0.80), ("stare", 0.76), ("hrf", 0.72), ("synthetic_vessels", 0.85))
"""Datasets of the synthetic tables and the Dice of their best rows."""
MODELS = ("unet", "attention_unet", "swin_unetr", "resenc_unet")
SEEDS = 3
CASES = 32
COLLAPSED_EVERY = 25
"""Every this many rows one collapses to an all-background prediction (Dice 0, HD95 inf)."""
DEFAULT_OUT = Path("results") / "perf" / "leaderboard.json"


def _config(dataset: str, model: str, lr: float, seed: int) -> dict[str, Any]:
    return run_from_dict(
        {
            "dataset": {"name": dataset, "kwargs": {}},
            "model": {"name": model, "kwargs": {}},
            "loss": {"name": "dice_ce"},
            "seed": seed,
            "optim": {"lr": lr},
            "trainer": {"max_steps": 300},
            "sweep": "perf",
        }
    ).to_dict()


def _case_values(rng: np.random.Generator, quality: float, case_effect: np.ndarray) -> list[dict[str, Any]]:
    """One run's 32 cases: Dice around ``quality`` plus the case effect, the other metrics from it."""
    dice = np.clip(quality + case_effect + rng.normal(0, 0.02, CASES), 0.0, 1.0)
    out = []
    for i, d in enumerate(dice):
        d = float(d)
        hd95 = math.inf if d == 0.0 else float(abs(rng.normal(40 * (1 - d), 3)))
        out.append(
            {
                "case_id": f"case_{i:03d}",
                "dice": d,
                "iou": d / (2 - d),
                "cldice": float(np.clip(d + rng.normal(0.02, 0.03), 0, 1)),
                "betti0_err": float(rng.poisson(40 * (1 - d) + 1)),
                "betti1_err": float(rng.poisson(8 * (1 - d) + 1)),
                "betti0_err_patch": float(abs(rng.normal(1 - d, 0.1))),
                "betti1_err_patch": float(abs(rng.normal(0.2 * (1 - d), 0.02))),
                "hd95": hd95,
                "nsd": float(np.clip(d - 0.1 + rng.normal(0, 0.03), 0, 1)),
                "ece": float(abs(rng.normal(0.05, 0.01))),
                "brier": float(abs(rng.normal(0.06, 0.01))),
            }
        )
    return out


def _record(
    config: dict[str, Any], run_id: str, cases: list[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    """A done train record with the fields ``segbench run`` writes (docs/records.md)."""
    return {
        "schema": RECORD_SCHEMA,
        "kind": "train",
        "run_id": run_id,
        "config_hash": hash_config(config),
        "config": config,
        "status": "done",
        "attempt": 1,
        "device": {"host": "perf", "cpu": "x86_64", "cpu_count": 2, "torch_threads": 2, "accelerator": "cpu"},
        "started_at": "2026-01-01T00:00:00+00:00",
        "worker": {"pid": 1, "host": "perf"},
        "git": {"commit": "0" * 40, "dirty": False},
        "versions": {"python": platform.python_version(), "segbench": "0.1.0", "numpy": np.__version__},
        "params": 401605,
        "train_seconds": seconds,
        "steps": 300,
        "epochs": 19,
        "test_seconds": 4.0,
        "infer_seconds": 3.0,
        "split": {"fold": 0, "num_folds": 5, "split_seed": 0, "skipped": {}},
        "cases": cases,
        "finished_at": "2026-01-01T00:05:00+00:00",
    }


def _baseline(dataset: str, rng: np.random.Generator) -> dict[str, Any]:
    """The all-foreground constant baseline of a dataset (what tells collapsed runs of older records)."""
    config = {
        "dataset": {"name": dataset, "kwargs": {}},
        "method": "all foreground",
        "eval": {"betti_patch": None, "nsd_tolerance": 1.0},
        "split": "test",
        "source": {"kind": "dataset", "constant": 1},
    }
    cases = [
        {
            "case_id": f"case_{i:03d}",
            "dice": d,
            "iou": d / (2 - d),
            "cldice": 0.4,
            "hd95": 380.0,
            "nsd": 0.003,
        }
        for i, d in enumerate(rng.uniform(0.1, 0.2, CASES).tolist())
    ]
    return {
        "schema": RECORD_SCHEMA,
        "kind": "evaluation",
        "run_id": f"eval__{dataset}__all-foreground",
        "config_hash": hash_config(config),
        "status": "done",
        "config": config,
        "method": "all foreground",
        "baseline": "constant",
        "cases": cases,
        "degenerate": {"kind": "all-foreground", "cases": [c["case_id"] for c in cases]},
    }


def synthetic_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` record dicts over :data:`TABLES` (one constant baseline each, then rows of 3 seeds of
    one model and learning rate, dealt round-robin over the tables; the last row may have fewer).

    Each table's rows differ by a quality, each seed by a training effect, each case by a difficulty
    shared by every row; 12 metrics per case (5 of them ranked); every
    :data:`COLLAPSED_EVERY`-th row predicts all background."""
    rng = np.random.default_rng(seed)
    difficulty = {name: rng.normal(0, 0.08, CASES) for name, _ in TABLES}
    out = [_baseline(name, rng) for name, _ in TABLES][:n]
    row = 0
    while len(out) < n:
        dataset, best = TABLES[row % len(TABLES)]
        model = MODELS[(row // len(TABLES)) % len(MODELS)]
        lr = round(1e-4 * (1 + row // (len(TABLES) * len(MODELS))), 6)
        quality = best - abs(rng.normal(0, 0.08))
        collapsed = row % COLLAPSED_EVERY == COLLAPSED_EVERY - 1
        for s in range(min(SEEDS, n - len(out))):
            config = _config(dataset, model, lr, s)
            if collapsed:
                effect = np.full(CASES, -2.0)
            else:
                effect = difficulty[dataset] + rng.normal(0, 0.015)
            cases = _case_values(rng, quality, effect)
            rid = f"{dataset}__{model}__lr{lr:g}__s{s}f0__{hash_config(config)}"
            out.append(_record(config, rid, cases, float(rng.uniform(60, 600))))
        row += 1
    return out


def _timed(results: Path, out: Path) -> float:
    start = time.perf_counter()
    write_leaderboard(results, out, plots=False, report=False)
    return time.perf_counter() - start


def bench_size(n: int, folder: Path, repeat: int = 1) -> dict[str, Any]:
    """Write ``n`` records under ``folder/results`` and time the cold, warm and incremental renders
    (each the best of ``repeat``; every repeat starts from an emptied cache)."""
    results, out = folder / "results", folder / "leaderboard.md"
    records = synthetic_records(n)
    for rec in records:
        write_json_atomic(record_path(results, rec["run_id"]), rec)
    cache = AnalysisCache.of(results).folder
    cold = warm = incremental = math.inf
    for k in range(repeat):
        shutil.rmtree(cache, ignore_errors=True)
        cold = min(cold, _timed(results, out))
        warm = min(warm, _timed(results, out))
        changed = records[-1]
        changed["cases"][0]["dice"] = min(1.0, changed["cases"][0]["dice"] + 0.001 * (k + 1))
        write_json_atomic(record_path(results, changed["run_id"]), changed)
        incremental = min(incremental, _timed(results, out))
    entries = len(list(cache.glob("*.pkl")))
    tables = len(group_records(Record.from_dict(r) for r in records))
    row = {"records": n, "tables": tables, "cold_s": cold, "warm_s": warm, "incremental_s": incremental}
    print(
        f"  {n:5d} records, {tables} tables: cold {cold:7.2f} s, warm {warm:6.2f} s, "
        f"one record changed {incremental:6.2f} s ({entries} cache entries)",
        flush=True,
    )
    return row


def growth(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Per consecutive pair of sizes: the ratio of records and of ``key`` seconds."""
    out = []
    for a, b in zip(rows, rows[1:]):
        out.append(
            {
                "from": a["records"],
                "to": b["records"],
                "records_ratio": b["records"] / a["records"],
                "time_ratio": b[key] / a[key] if a[key] > 0 else math.nan,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600], help="numbers of records")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many timings of each render")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON file (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.sizes):
        parser.error("--sizes: every size must be >= 1")
    if args.repeat < 1:
        parser.error("--repeat: must be >= 1")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Markdown without figures")
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(bench_size(n, Path(tmp), args.repeat))
    print("\n| records | tables | cold s | warm s | one record changed s |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        secs = " | ".join(f"{r[k]:.2f}" for k in ("cold_s", "warm_s", "incremental_s"))
        print(f"| {r['records']} | {r['tables']} | {secs} |")
    ratios = {key: growth(rows, key) for key in ("cold_s", "warm_s", "incremental_s")}
    if rows[1:]:
        print("\n| sizes | records ratio | cold ratio | warm ratio | one record changed ratio |")
        print("|---|---:|---:|---:|---:|")
        for i, g in enumerate(ratios["cold_s"]):
            cells = [f"{ratios[k][i]['time_ratio']:.2f}" for k in ("cold_s", "warm_s", "incremental_s")]
            print(f"| {g['from']} → {g['to']} | {g['records_ratio']:.2f} | " + " | ".join(cells) + " |")
    data = {
        "machine": {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "repeat": args.repeat,
        "sizes": rows,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, data)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
