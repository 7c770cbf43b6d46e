"""Paired loss comparisons across models (``python -m bench.leaderboard.claims RESULTS --dataset D
--base L1 --other L2``).

For every leaderboard row trained with both losses (same row identity apart from the loss, same
seeds and folds), the per-run test mean of each metric is differenced (``other - base``) and
averaged over the runs. Across models this gives how many models the other loss improves, the median
difference and a two-sided Wilcoxon signed-rank p-value over the models
(:func:`bench.leaderboard.wilcoxon.signed_rank_p`, the leaderboard's test, choosing exact or normal
approximation as ``scipy.stats.wilcoxon`` does by default). README's "What the tables say" quotes
this for clDice on the synthetic grid.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bench.leaderboard.wilcoxon import signed_rank_p
from bench.metrics.registry import higher_is_better
from bench.records.identity import row_key
from bench.records.record import Record
from bench.records.store import load_records

DEFAULT_METRICS = ("dice", "cldice", "betti0_err", "betti1_err", "hd95")


def _model_key(config: dict[str, Any]) -> str:
    """The leaderboard's row identity (:func:`bench.records.identity.row_key`) without the loss: which rows
    may be paired."""
    return row_key({k: v for k, v in config.items() if k != "loss"})


def paired_losses(
    records: Iterable[Record], dataset: str, base: str, other: str, metrics: tuple[str, ...]
) -> dict[str, Any]:
    """Per-model seed-averaged differences ``other - base`` of each metric, and their summary."""
    means: dict[tuple[str, str, tuple[int, int]], dict[str, float]] = {}  # (row, loss, (seed, fold))
    names: dict[str, str] = {}
    for r in records:
        if r.kind != "train" or not r.done:
            continue
        if r.dataset.get("name") != dataset or r.loss_name not in (base, other):
            continue
        key = _model_key(r.config)
        names[key] = r.model_name
        run = (r.seed, r.fold or 0)
        means[(key, r.loss_name, run)] = {m: r.aggregates[m]["mean"] for m in metrics}
    runs_of = {
        key: sorted(s for k, loss, s in means if k == key and loss == base and (k, other, s) in means)
        for key in names
    }
    paired = [key for key in names if runs_of[key]]
    counts = defaultdict(int)
    for key in paired:
        counts[names[key]] += 1
    labels: dict[str, str] = {}
    for i, key in enumerate(paired):  # rows sharing a model name: its settings, then a number
        label = (
            names[key] if counts[names[key]] == 1 else f"{names[key]} {json.loads(key)['model']['kwargs']}"
        )
        labels[key] = label if label not in labels.values() else f"{label} #{i}"
    diffs: dict[str, dict[str, float]] = defaultdict(dict)
    for key in paired:
        for m in metrics:
            d = [means[(key, other, s)][m] - means[(key, base, s)][m] for s in runs_of[key]]
            diffs[labels[key]][m] = float(np.mean(d)) if np.all(np.isfinite(d)) else float("nan")
    summary = {}
    for m in metrics:
        d = np.array([diffs[n][m] for n in diffs if np.isfinite(diffs[n][m])])
        better = (d > 0) if higher_is_better(m) else (d < 0)
        p = signed_rank_p(d, scipy_auto=True) if len(d) >= 2 and np.any(d != 0) else float("nan")
        summary[m] = {
            "models": int(len(d)),
            "improved": int(better.sum()),
            "median_diff": float(np.median(d)) if len(d) else float("nan"),
            "wilcoxon_p": p,
        }
    return {"dataset": dataset, "base": base, "other": other, "per_model": dict(diffs), "summary": summary}


def render(result: dict[str, Any]) -> str:
    """A markdown table of the summary."""
    lines = [
        f"{result['dataset']}: {result['other']} vs {result['base']} (other - base, seed means, per model)",
        "",
        "| metric | models | improved by the other loss | median difference | Wilcoxon p |",
        "|---|---|---|---|---|",
    ]
    for m, s in result["summary"].items():
        lines.append(
            f"| {m} | {s['models']} | {s['improved']} | {s['median_diff']:+.4g} | {s['wilcoxon_p']:.2g} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.leaderboard.claims", description=__doc__.splitlines()[0]
    )
    p.add_argument("results", nargs="?", default="results")
    p.add_argument("--dataset", default="synthetic_vessels")
    p.add_argument("--base", default="dice")
    p.add_argument("--other", default="dice+cldice")
    p.add_argument("--metric", action="append", help="metric keys (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the per-model differences as json")
    args = p.parse_args(argv)
    records = load_records(Path(args.results))[0]
    result = paired_losses(
        records, args.dataset, args.base, args.other, tuple(args.metric or DEFAULT_METRICS)
    )
    print(json.dumps(result, indent=1) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
