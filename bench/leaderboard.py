"""Render ``leaderboard.md`` from the run records (the records are the source of truth).

One table per dataset; a row per model × loss pools the per-case values of every done run of
that pair (all seeds and folds) and shows mean ± std over cases, parameters, train time and
where the numbers came from (sweep, seeds, folds, step budget, commit).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from bench.store import iter_records, write_text_atomic

# Metrics shown, in order, with the direction that is better; others found in records follow.
PREFERRED = [
    ("dice", "↑"),
    ("cldice", "↑"),
    ("iou", "↑"),
    ("betti0_err", "↓"),
    ("betti1_err", "↓"),
    ("betti2_err", "↓"),
    ("betti0_err_patch", "↓"),
    ("betti1_err_patch", "↓"),
    ("betti2_err_patch", "↓"),
    ("hd95", "↓"),
    ("nsd", "↑"),
    ("ece", "↓"),
    ("brier", "↓"),
]


def _fmt(values: np.ndarray) -> str:
    """``mean ± std`` of the finite values; infinite ones (HD95 with one empty mask) are
    counted next to it instead of silently dropped. NaN (both masks empty) is left out."""
    finite = values[np.isfinite(values)]
    n_inf = int(np.isinf(values).sum())
    suffix = f" (+{n_inf} ∞)" if n_inf else ""
    if finite.size == 0:
        return ("∞" if n_inf else "–") + (f" ×{n_inf}" if n_inf > 1 else "")
    std = finite.std(ddof=1) if finite.size > 1 else 0.0
    return f"{finite.mean():.3f} ± {std:.3f}{suffix}"


def group_records(
    records: Iterable[dict[str, Any]],
) -> dict[str, dict[tuple[str, str], list[dict[str, Any]]]]:
    """``{dataset: {(model, loss): [records]}}`` for every record (done or not)."""
    table: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        cfg = rec.get("config", {})
        try:
            key = (cfg["model"]["name"], cfg["loss"]["name"])
            table[cfg["dataset"]["name"]][key].append(rec)
        except (KeyError, TypeError):
            continue
    return table


def _metric_columns(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    present: set[str] = set()
    for rec in runs:
        for case in rec.get("cases", []):
            present.update(k for k, v in case.items() if k != "case_id" and isinstance(v, (int, float)))
    cols = [(k, d) for k, d in PREFERRED if k in present]
    known = {k for k, _ in PREFERRED}
    return cols + [(k, "") for k in sorted(present - known)]


def render_dataset(dataset: str, rows: dict[tuple[str, str], list[dict[str, Any]]]) -> str:
    """Markdown section for one dataset."""
    done = {k: [r for r in v if r.get("status") == "done"] for k, v in rows.items()}
    all_done = [r for v in done.values() for r in v]
    cols = _metric_columns(all_done)
    head = [
        "model",
        "loss",
        *[f"{k} {d}".strip() for k, d in cols],
        "params",
        "train s",
        "runs",
        "provenance",
    ]
    lines = [f"## {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(done, key=lambda k: -_mean_of(done[k], "dice"))
    for model, loss in order:
        runs = done[(model, loss)]
        failed = sum(1 for r in rows[(model, loss)] if r.get("status") == "failed")
        cells = [model, loss]
        for key, _ in cols:
            vals = np.array([c.get(key, math.nan) for r in runs for c in r.get("cases", [])], dtype=float)
            cells.append(_fmt(vals))
        params = runs[0].get("params") if runs else None
        cells.append(f"{params / 1e6:.2f} M" if params else "–")
        secs = [r.get("train_seconds", math.nan) for r in runs]
        cells.append(f"{np.nanmean(secs):.0f}" if runs else "–")
        cells.append(f"{len(runs)}" + (f" (+{failed} failed)" if failed else ""))
        cells.append(_provenance(runs))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "mean ± std over test cases, pooled over the runs of a row (seeds × folds); "
        "(+k ∞): k cases with an infinite value (HD95 when exactly one mask is empty), "
        "not in the mean; NaN (both masks empty) is left out (docs/metrics.md)."
    )
    return "\n".join(lines)


def _mean_of(runs: list[dict[str, Any]], key: str) -> float:
    vals = [c.get(key) for r in runs for c in r.get("cases", [])]
    vals = [v for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
    return float(np.mean(vals)) if vals else -math.inf


def _provenance(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "no done run"
    sweeps = sorted({r["config"].get("sweep", "?") for r in runs})
    seeds = sorted({r["config"]["seed"] for r in runs})
    folds = sorted({r["config"]["fold"] for r in runs})
    steps = sorted({r["config"]["trainer"]["max_steps"] for r in runs})
    commits = sorted({(r.get("git") or {}).get("commit") or "no-git" for r in runs})
    return (
        f"sweep {','.join(sweeps)}; seeds {seeds}; folds {folds}; "
        f"max_steps {','.join(map(str, steps))}; commit {','.join(c[:8] for c in commits)}"
    )


def render(records: Iterable[dict[str, Any]]) -> str:
    """The whole leaderboard as Markdown."""
    grouped = group_records(records)
    parts = [
        "# segbench leaderboard",
        "",
        "Generated by `segbench leaderboard` from the run records under `results/`; do not edit by hand.",
        "",
    ]
    if not grouped:
        parts.append("No run records yet: `segbench run` writes them.")
    for dataset in sorted(grouped):
        parts += [render_dataset(dataset, grouped[dataset]), ""]
    return "\n".join(parts).rstrip() + "\n"


def write_leaderboard(results: Path, out: Path) -> Path:
    """Render the records under ``results`` into ``out`` (atomically)."""
    write_text_atomic(Path(out), render(iter_records(Path(results))))
    return Path(out)
