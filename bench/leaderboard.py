"""The leaderboard: group run records into tables and rows, compute the statistics, render them.

A *table* is one dataset with one set of dataset settings and metric settings (dataset kwargs,
``eval.betti_patch``, ``eval.nsd_tolerance``); a *row* is one configuration
(:func:`bench.config.row_key`: the whole config except seed, fold and fields that cannot change a
result), pooling its runs over seeds and folds. Evaluation and ensemble records are rows labelled by
their method; a human-baseline record (``baseline: "human"``) is shown in its table, outside the
ranking. Every statistic is computed from the per-case values of the records (see
``docs/leaderboard.md``); the renderers (Markdown here, CSV/JSON/LaTeX/HTML in
:mod:`bench.report`, PNGs in :mod:`bench.plots`) only format it.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import stats
from bench.config import ROW_EXCLUDED, row_key
from bench.metrics.reduction import Reduction, reduce_values
from bench.metrics.registry import METRICS, is_metric, metric_info
from bench.store import scan_records, write_text_atomic

RANK_METRICS: tuple[str, ...] = ("dice", "cldice", "betti0_err", "betti1_err", "ece")
"""Default metric set of the combined rank (and the default Markdown columns)."""
ALPHA = 0.05
"""Family-wise error rate of the Holm-corrected pairwise tests of one table and metric."""
TABLE_EVAL_KEYS = ("betti_patch", "nsd_tolerance")
"""Metric settings that change the numbers: different values make different tables (so do the dataset
kwargs and the training patch size)."""
_NOT_SETTINGS = ("root", "download", "cache_dir", "num_workers")  # dataset kwargs that change no number


@dataclass
class Row:
    """One configuration (train) or method (evaluation/ensemble) of a table, with all its records."""

    key: str
    kind: str
    model: str
    loss: str
    records: list[dict[str, Any]]
    human: bool = False
    label: str = ""

    @property
    def done(self) -> list[dict[str, Any]]:
        """Records with status ``done``, in run-id order."""
        return sorted((r for r in self.records if r.get("status") == "done"), key=lambda r: r["run_id"])

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Records that are not done (failed or unknown status)."""
        return [r for r in self.records if r.get("status") != "done"]

    @property
    def config(self) -> dict[str, Any]:
        """The config of the row's first record."""
        return self.records[0].get("config") or {}


@dataclass
class Table:
    """One dataset with one set of settings; ``label`` names the settings when a dataset has several."""

    key: str
    dataset: str
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    label: str = ""
    slug: str = ""


def _kind(record: Mapping[str, Any]) -> str:
    return str(record.get("kind") or "train")


def _table_settings(record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    cfg = record.get("config") or {}
    ds = cfg.get("dataset") or {}
    kwargs = {k: v for k, v in (ds.get("kwargs") or {}).items() if k not in _NOT_SETTINGS}
    ev = cfg.get("eval") or {}
    settings = {**kwargs, **{k: ev[k] for k in TABLE_EVAL_KEYS if k in ev}}
    if isinstance(cfg.get("data"), Mapping):  # a train run: the patch size it used (dataset kwargs win)
        settings.setdefault("patch_size", cfg["data"].get("patch_size"))
    return str(ds.get("name", "?")), settings


def _row_identity(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(row key, model cell, loss cell)`` of a record."""
    cfg = record.get("config") or {}
    if _kind(record) == "train":
        return (
            row_key(cfg),
            str((cfg.get("model") or {}).get("name", "?")),
            str((cfg.get("loss") or {}).get("name", "?")),
        )
    method = str(record.get("method") or cfg.get("method") or record.get("run_id"))
    ident = {"kind": _kind(record), "dataset": cfg.get("dataset"), "method": method, "eval": cfg.get("eval")}
    if record.get("baseline"):
        ident["baseline"] = record["baseline"]
    return json.dumps(ident, sort_keys=True, default=str), method, "–"


def group_records(records: Iterable[Mapping[str, Any]]) -> list[Table]:
    """Tables (sorted by label) of rows; records without a usable config are left out."""
    tables: dict[str, Table] = {}
    for rec in records:
        if not isinstance(rec.get("config"), Mapping):
            continue
        dataset, settings = _table_settings(rec)
        tkey = json.dumps([dataset, settings], sort_keys=True, default=str)
        table = tables.setdefault(tkey, Table(tkey, dataset, settings))
        rkey, model, loss = _row_identity(rec)
        row = next((r for r in table.rows if r.key == rkey), None)
        if row is None:
            row = Row(rkey, _kind(rec), model, loss, [], human=rec.get("baseline") == "human")
            table.rows.append(row)
        row.records.append(dict(rec))
    tables = _attach_evaluations(tables)
    _label_tables(list(tables.values()))
    for table in tables.values():
        _label_rows(table)
    return sorted(tables.values(), key=lambda t: t.label)


_EVAL_OPTIONAL = ("betti_patch", "patch_size")  # settings an evaluation may lack and still belong


def _compatible(ev: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """An evaluation (or human baseline) belongs to a table with the same settings, also when it has no
    patch size (it was not trained here) and no patch Betti errors (the other metrics are the same)."""
    keys = set(ev) | set(other)
    return all(ev.get(k) == other.get(k) or (k in _EVAL_OPTIONAL and ev.get(k) is None) for k in keys)


def _attach_evaluations(tables: dict[str, Table]) -> dict[str, Table]:
    """Move a table of evaluation/ensemble rows only into the compatible train tables of its dataset."""
    out = dict(tables)
    for key, table in tables.items():
        if not table.rows or any(r.kind == "train" for r in table.rows):
            continue
        hosts = [
            t
            for k, t in tables.items()
            if k != key
            and t.dataset == table.dataset
            and any(r.kind == "train" for r in t.rows)
            and _compatible(table.settings, t.settings)
        ]
        for host in hosts:
            host.rows.extend(table.rows)
        if hosts:
            del out[key]
    return out


def _fmt_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "-".join(_fmt_value(x) for x in v)
    if isinstance(v, dict):
        return ",".join(f"{k}={_fmt_value(x)}" for k, x in sorted(v.items()))
    return "none" if v is None else str(v)


def settings_text(settings: Mapping[str, Any]) -> str:
    """``key value, ...`` of a table's settings."""
    return ", ".join(f"{k} {_fmt_value(v)}" for k, v in sorted(settings.items()))


def _label_tables(tables: list[Table]) -> None:
    by_name: dict[str, list[Table]] = {}
    for t in tables:
        by_name.setdefault(t.dataset, []).append(t)
    for name, group in by_name.items():
        keys = sorted({k for t in group for k in t.settings})
        differ = [k for k in keys if len({_fmt_value(t.settings.get(k)) for t in group}) > 1]
        for t in group:
            extra = ", ".join(f"{k} {_fmt_value(t.settings.get(k))}" for k in differ)
            t.label = f"{name} ({extra})" if extra else name
            t.slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", t.label).strip("-") or "table"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: d}


def _label_rows(table: Table) -> None:
    """Label rows that share a model name (and kind) by the config fields in which they differ."""
    skip = {*ROW_EXCLUDED, "model.name", "loss.name"}
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in table.rows:
        groups.setdefault((row.kind, row.model), []).append(row)
    for group in groups.values():
        flats = [
            {k: v for k, v in _flatten(r.config).items() if k not in skip and not k.startswith("dataset.")}
            for r in group
        ]
        keys = sorted({k for f in flats for k in f})
        differ = [k for k in keys if len({_fmt_value(f.get(k)) for f in flats}) > 1]
        for row, flat in zip(group, flats):
            parts = [
                f"{k.split('.')[-1]} {_fmt_value(flat.get(k))}" for k in differ if not k.startswith("loss.")
            ]
            row.label = f"{row.model} ({', '.join(parts)})" if parts else row.model
            loss = [
                f"{k.split('.')[-1]} {_fmt_value(flat.get(k))}"
                for k in differ
                if k.startswith("loss.kwargs.")
            ]
            if loss:
                row.loss = f"{row.loss} ({', '.join(loss)})"
        seen: dict[tuple[str, str], int] = {}
        for row in group:  # rows that still collide (e.g. kwargs that are dicts) get a short key
            n = seen[(row.label, row.loss)] = seen.get((row.label, row.loss), 0) + 1
            if n > 1:
                row.label += f" #{n}"


# ---- analysis ---------------------------------------------------------------------------


@dataclass
class RowStats:
    """One row and metric: the reduction over all its per-case values, the CI and the seed spread."""

    reduction: Reduction
    ci: stats.Interval
    n_runs: int
    seed_sd: float  # std (ddof=1) of the per-run means; NaN with one run
    seed_share: float  # share of the variance between runs (NaN with one run)
    case_share: float


@dataclass
class PairResult:
    """Paired comparison of rows ``a`` and ``b`` (keys) on one metric; ``diff`` oriented as a - b."""

    a: str
    b: str
    paired: stats.Paired
    p_holm: float
    significant: bool
    noise_sd: float
    within_noise: bool


@dataclass
class Analysis:
    """Everything the renderers show for one table."""

    table: Table
    ranked: list[Row]  # rows with a done run, best combined rank first
    unranked: list[Row]  # rows without a done run (failed)
    human: list[Row]
    cases: list[str]
    metrics: list[str]  # every metric present, display order
    rank_metrics: list[str]  # the combined rank's metric set (present ones)
    row_stats: dict[str, dict[str, RowStats]]
    case_values: dict[str, dict[str, np.ndarray]]  # row -> metric -> (cases,) mean over runs
    combined: dict[str, float]
    agg_rank: dict[str, dict[str, float]]  # metric -> row -> rank of the mean
    case_rank: dict[str, dict[str, float]]  # metric -> row -> mean rank over cases
    stability: stats.RankStability | None
    metric_stability: dict[str, stats.RankStability]
    pairs: dict[str, list[PairResult]]
    best: dict[str, str]
    tied_best: dict[str, set[str]]
    notes: dict[str, list[str]]
    seed: int
    n_resamples: int
    plot_notes: dict[str, str] = field(default_factory=dict)  # plots skipped for a row, and why

    def is_best(self, metric: str, key: str) -> bool:
        """True when row ``key`` has the best mean of ``metric`` (ties: every row with that mean)."""
        best = self.best.get(metric)
        if best is None or key not in self.row_stats or all(r.key != key for r in self.ranked):
            return False
        if key == best:
            return True
        return bool(
            self.row_stats[key][metric].reduction["mean"] == self.row_stats[best][metric].reduction["mean"]
        )


def _metric_order(keys: Iterable[str]) -> list[str]:
    order = {k: i for i, k in enumerate(METRICS)}

    def sort_key(k: str) -> tuple[int, int, str]:
        if k in order:
            return (0, order[k], "")
        if is_metric(k):
            base = k.rsplit("_", 1)[0]
            return (0, order.get(base, len(order)), k)
        return (1, 0, k)

    return sorted(set(keys), key=sort_key)


def _values(record: Mapping[str, Any], key: str) -> dict[str, float]:
    out = {}
    for case in record.get("cases") or []:
        v = case.get(key, math.nan)
        out[str(case.get("case_id"))] = math.nan if v is None or isinstance(v, bool) else float(v)
    return out


def _run_matrix(row: Row, key: str, cases: Sequence[str]) -> np.ndarray:
    """``(runs, cases)`` values of ``key`` on the table's case axis (NaN where missing)."""
    return np.array([[_values(r, key).get(c, math.nan) for c in cases] for r in row.done], dtype=np.float64)


def _row_stats(row: Row, key: str, *, n_resamples: int, seed: int) -> RowStats:
    per_run = [_values(r, key) for r in row.done]
    cases = sorted({c for v in per_run for c in v})
    matrix = np.array([[v.get(c, math.nan) for c in cases] for v in per_run], dtype=np.float64)
    kept = [np.array([x for x in v.values() if not math.isnan(x)]) for v in per_run]
    red = reduce_values([x for v in per_run for x in v.values()])
    ci = stats.mean_ci(matrix, n_resamples=n_resamples, seed=seed)
    means = [reduce_values(v)["mean"] for v in kept if v.size]
    seed_sd = float(np.std(means, ddof=1)) if len(means) > 1 and np.isfinite(means).all() else math.nan
    seed_share, case_share = stats.variance_shares(kept)
    return RowStats(red, ci, len(means), seed_sd, seed_share, case_share)


def _case_means(matrix: np.ndarray) -> np.ndarray:
    """Per-case mean over runs (NaN runs left out; an infinite value makes the case infinite)."""
    if not matrix.size:
        return np.array([])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cases stay NaN
        return np.nanmean(matrix, axis=0)


def analyse(
    table: Table,
    *,
    metrics: Sequence[str] | None = None,
    n_resamples: int = stats.N_RESAMPLES,
    seed: int = 0,
) -> Analysis:
    """All statistics of one table (see ``docs/leaderboard.md`` for what each means)."""
    candidates = [r for r in table.rows if not r.human]
    ranked = [r for r in candidates if r.done]
    unranked = [r for r in candidates if not r.done]
    human = [r for r in table.rows if r.human and r.done] + [r for r in table.rows if r.human and not r.done]
    shown = ranked + [r for r in human if r.done]
    cases = sorted({str(c.get("case_id")) for r in ranked for rec in r.done for c in rec.get("cases") or []})
    present = {
        k
        for r in shown
        for rec in r.done
        for c in rec.get("cases") or []
        for k, v in c.items()
        if k != "case_id" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    all_metrics = _metric_order(present)
    wanted = list(metrics) if metrics else list(RANK_METRICS)
    rank_metrics = [m for m in wanted if m in present and is_metric(m)]
    if not rank_metrics and not metrics:
        rank_metrics = [m for m in all_metrics if is_metric(m)][:5]
    row_stats = {
        r.key: {m: _row_stats(r, m, n_resamples=n_resamples, seed=seed) for m in all_metrics} for r in shown
    }
    mats = {r.key: {m: _run_matrix(r, m, cases) for m in rank_metrics} for r in ranked}
    case_values = {r.key: {m: _case_means(mats[r.key][m]) for m in rank_metrics} for r in ranked}
    up = {m: metric_info(m).higher_is_better for m in rank_metrics}
    agg_rank: dict[str, dict[str, float]] = {}
    case_rank: dict[str, dict[str, float]] = {}
    score_cols = []
    for m in rank_metrics:
        means = np.array([row_stats[r.key][m].reduction["mean"] for r in ranked])
        score = stats.signed(means, up[m])
        score_cols.append(score)
        agg_rank[m] = dict(zip([r.key for r in ranked], stats.rank_scores(score)))
        per_case = np.array([stats.signed(case_values[r.key][m], up[m]) for r in ranked])
        case_rank[m] = dict(zip([r.key for r in ranked], stats.rank_then_aggregate(per_case)))
    combined: dict[str, float] = {}
    if ranked and rank_metrics:
        comb = stats.combined_ranks(np.stack(score_cols, axis=-1))
        combined = dict(zip([r.key for r in ranked], comb))
    order = sorted(range(len(ranked)), key=lambda i: (combined.get(ranked[i].key, 0), ranked[i].label))
    ranked = [ranked[i] for i in order]
    stability, metric_stability = None, {}
    if len(ranked) > 1 and rank_metrics and cases:
        boot = np.stack(
            [
                stats.signed(
                    stats.resampled_means(
                        [mats[r.key][m] for r in ranked], n_resamples=n_resamples, seed=seed
                    ),
                    up[m],
                )
                for m in rank_metrics
            ],
            axis=-1,
        )  # (B, rows, metrics); the same case and run draws for every metric (same seed)
        full_comb = np.array([combined[r.key] for r in ranked])
        stability = stats.rank_stability(full_comb, stats.combined_ranks(boot), seed=seed)
        for j, m in enumerate(rank_metrics):
            full = np.array([agg_rank[m][r.key] for r in ranked])
            metric_stability[m] = stats.rank_stability(full, stats.rank_scores(boot[..., j]), seed=seed)
    pairs, best, tied = _pairs(ranked, rank_metrics, row_stats, case_values, up, n_resamples, seed)
    notes = _notes(ranked + unranked + human, cases, row_stats)
    return Analysis(
        table,
        ranked,
        unranked,
        human,
        cases,
        all_metrics,
        rank_metrics,
        row_stats,
        case_values,
        combined,
        agg_rank,
        case_rank,
        stability,
        metric_stability,
        pairs,
        best,
        tied,
        notes,
        seed,
        n_resamples,
    )


def _pairs(
    ranked: list[Row],
    rank_metrics: list[str],
    row_stats: dict[str, dict[str, RowStats]],
    case_values: dict[str, dict[str, np.ndarray]],
    up: dict[str, bool],
    n_resamples: int,
    seed: int,
) -> tuple[dict[str, list[PairResult]], dict[str, str], dict[str, set[str]]]:
    pairs: dict[str, list[PairResult]] = {}
    best: dict[str, str] = {}
    tied: dict[str, set[str]] = {}
    for m in rank_metrics:
        means = {r.key: row_stats[r.key][m].reduction["mean"] for r in ranked}
        defined = [r.key for r in ranked if not math.isnan(means[r.key])]
        if not defined:
            continue
        best[m] = max(defined, key=lambda k: stats.signed(np.array(means[k]), up[m]))
        raw = []
        for i, a in enumerate(ranked):
            for b in ranked[i + 1 :]:
                p = stats.paired_compare(
                    case_values[a.key][m], case_values[b.key][m], n_resamples=n_resamples, seed=seed
                )
                raw.append((a.key, b.key, p))
        adj = stats.holm([p.p for _, _, p in raw])
        results = []
        for (a, b, p), ph in zip(raw, adj):
            sds = [row_stats[k][m].seed_sd for k in (a, b) if not math.isnan(row_stats[k][m].seed_sd)]
            noise = math.sqrt(sum(s * s for s in sds) / len(sds)) if sds else math.nan
            sig = bool(ph < ALPHA)
            results.append(PairResult(a, b, p, float(ph), sig, noise, bool(abs(p.diff) < noise)))
        pairs[m] = results
        tied[m] = {
            k
            for pr in results
            if best[m] in (pr.a, pr.b) and not pr.significant
            for k in (pr.a, pr.b)
            if means[k] != means[best[m]]
        }
    return pairs, best, tied


def _notes(
    rows: list[Row], cases: list[str], row_stats: dict[str, dict[str, RowStats]]
) -> dict[str, list[str]]:
    """Per row: failed runs, missing or skipped cases, fewer seeds/folds than the table."""
    train = [r for r in rows if r.kind == "train" and r.done and not r.human]
    train_keys = {r.key for r in train}
    seeds = {
        ((r.get("config") or {}).get("seed"), (r.get("config") or {}).get("fold"))
        for row in train
        for r in row.done
    }
    notes: dict[str, list[str]] = {}
    for row in rows:
        out = []
        if row.failed:
            errs = sorted({str(r.get("error") or r.get("status") or "no status")[:80] for r in row.failed})
            out.append(f"{len(row.failed)} run(s) not done: {'; '.join(errs)}")
        have = {str(c.get("case_id")) for r in row.done for c in r.get("cases") or []}
        missing = [c for c in cases if c not in have]
        if row.done and missing and not row.human:
            out.append(f"missing {len(missing)} of {len(cases)} cases ({', '.join(missing[:3])}…)")
        skipped = {k for r in row.done for k in ((r.get("split") or {}).get("skipped") or {})}
        if skipped:
            out.append(f"{len(skipped)} case(s) skipped by the data loader")
        runs = {(r.get("config", {}).get("seed"), r.get("config", {}).get("fold")) for r in row.done}
        if row.key in train_keys and len(runs) < len(seeds):
            out.append(f"{len(runs)} of the table's {len(seeds)} seed×fold runs")
        notes[row.key] = out
    return notes


# ---- rendering: Markdown ----------------------------------------------------------------


def fmt_num(v: float, ref: float | None = None) -> str:
    """A value with 3 decimals (1 when the magnitude ``ref`` is ≥ 10); ``∞``/``–`` for inf/NaN."""
    if v is None or math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    scale = abs(ref if ref is not None and math.isfinite(ref) else v)
    return f"{v:.1f}" if scale >= 10 else f"{v:.3f}"


def fmt_cell(s: RowStats) -> str:
    """``mean [lo, hi]`` plus the counts of infinite and NaN values."""
    r = s.reduction
    if r["n"] == 0:
        return "–" + (f" ({r['n_nan']} NaN)" if r["n_nan"] else "")
    text = f"{fmt_num(r['mean'])} [{fmt_num(s.ci.lo, r['mean'])}, {fmt_num(s.ci.hi, r['mean'])}]"
    extra = [f"{r['n_inf']} ∞" for _ in [0] if r["n_inf"]] + [f"{r['n_nan']} NaN" for _ in [0] if r["n_nan"]]
    return text + (f" ({', '.join(extra)})" if extra else "")


def fmt_params(params: int | None) -> str:
    """Parameter count as ``0.40 M`` (``12.3 k`` below 10 000)."""
    if not params:
        return "–"
    return f"{params / 1e3:.1f} k" if params < 10_000 else f"{params / 1e6:.2f} M"


def budget(row: Row) -> str:
    """The training budget of a row (configured max_steps / max_epochs), ``–`` for evaluations."""
    tr = row.config.get("trainer") or {}
    if row.kind != "train" or not tr:
        return "–"
    parts = []
    if (tr.get("max_steps") or -1) > 0:
        parts.append(f"{tr['max_steps']} steps")
    if (tr.get("max_epochs") or -1) > 0:
        parts.append(f"{tr['max_epochs']} ep")
    return ", ".join(parts) or "unlimited"


def runs_text(row: Row, what: str) -> str:
    """Sorted distinct ``seed`` / ``fold`` values of the row's done runs."""
    vals = sorted({(r.get("config") or {}).get(what) for r in row.done}, key=str)
    return ",".join("–" if v is None else str(v) for v in vals) or "–"


def provenance(row: Row) -> str:
    """Budget, seeds, folds, device, commit and record ids of a row, on one line."""
    recs = row.records
    commits = sorted({((r.get("git") or {}).get("commit") or "no-git")[:8] for r in recs})
    dirty = any((r.get("git") or {}).get("dirty") for r in recs)
    devices = sorted({_device(r) for r in recs})
    steps = sorted({str(r.get("steps")) for r in row.done if r.get("steps") is not None})
    parts = [
        f"budget {budget(row)}" + (f" (ran {','.join(steps)} steps)" if steps else ""),
        f"seeds {runs_text(row, 'seed')}",
        f"folds {runs_text(row, 'fold')}",
        f"device {','.join(devices)}",
        f"commit {','.join(commits)}" + (" (dirty)" if dirty else ""),
        "records "
        + ", ".join(
            f"`{r.get('run_id')}`" + ("" if r.get("status") == "done" else f" ({r.get('status')})")
            for r in recs
        ),
    ]
    return "; ".join(parts)


def _device(record: Mapping[str, Any]) -> str:
    dev = record.get("device") or {}
    return str(dev.get("name") or dev.get("gpu") or dev.get("accelerator") or dev.get("cpu") or "?")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def plot_links(analysis: Analysis, base: str) -> list[tuple[str, str]]:
    """``(title, relative path)`` of the plots :mod:`bench.plots` writes for this table."""
    from bench import plots

    return [(title, f"{base}/{analysis.table.slug}/{name}") for title, name in plots.plot_names(analysis)]


def render_table_md(a: Analysis, links: list[tuple[str, str]] | None = None) -> str:
    """Markdown section of one table."""
    t = a.table
    head = ["#", "model", "loss", *[f"{m} {metric_info(m).arrow}" for m in a.rank_metrics]]
    head += ["params", "budget", "seeds", "train s", "notes"]
    lines = [f"## {t.label}", ""]
    if t.settings:
        lines += [f"Settings: {settings_text(t.settings)}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cells(row: Row, rank: str) -> list[str]:
        out = [rank, _md_escape(row.label), _md_escape(row.loss)]
        for m in a.rank_metrics:
            s = a.row_stats.get(row.key, {}).get(m)
            if s is None:
                out.append("–")
                continue
            c = fmt_cell(s)
            if a.is_best(m, row.key):
                c = f"**{c}**"
            elif row.key in a.tied_best.get(m, set()):
                c += " ≈"
            out.append(c)
        params = next((r.get("params") for r in row.done if r.get("params")), None)
        secs = [r.get("train_seconds") for r in row.done if isinstance(r.get("train_seconds"), (int, float))]
        out += [
            fmt_params(params),
            budget(row),
            runs_text(row, "seed") if row.kind == "train" else "–",
            f"{np.mean(secs):.0f}" if secs else "–",
            _md_escape("; ".join(a.notes.get(row.key, []))),
        ]
        return out

    for row in a.ranked:
        lines.append("| " + " | ".join(cells(row, f"{a.combined.get(row.key, 1):.0f}")) + " |")
    for row in a.unranked:
        lines.append("| " + " | ".join(cells(row, "failed")) + " |")
    for row in a.human:
        lines.append("| " + " | ".join(cells(row, "human")) + " |")
    lines += ["", legend(a)]
    if a.stability is not None:
        lines += ["", *_ranking_md(a)]
    noise = _noise_md(a)
    if noise:
        lines += ["", noise]
    if links:
        lines += ["", "Plots: " + " · ".join(f"[{title}]({path})" for title, path in links)]
        if a.plot_notes:
            lines += ["", "Not drawn: " + "; ".join(f"{k} ({v})" for k, v in a.plot_notes.items()) + "."]
    lines += ["", "Provenance:", ""]
    lines += [
        f"- **{_md_escape(r.label)} / {_md_escape(r.loss)}**: {provenance(r)}"
        for r in a.ranked + a.unranked + a.human
    ]
    return "\n".join(lines)


def noise_pairs(a: Analysis) -> list[str]:
    """Pairs whose mean difference is below the seed spread, one line each."""
    return [
        f"{_label(a, p.a)} vs {_label(a, p.b)} "
        f"({m}: Δ {fmt_num(p.paired.diff)} < seed sd {fmt_num(p.noise_sd)})"
        for m in a.rank_metrics
        for p in a.pairs.get(m, [])
        if p.within_noise
    ]


def _noise_md(a: Analysis) -> str:
    """The noise flags for the markdown table, kept short: per metric, the rows whose difference
    from that metric's best row is below the seed spread; the full pair list is in the exports."""
    parts, total = [], 0
    for m in a.rank_metrics:
        pairs = [p for p in a.pairs.get(m, []) if p.within_noise]
        total += len(pairs)
        best = a.best.get(m)
        if best is None and a.ranked:
            best = a.ranked[0].key
        near = sorted({_label(a, p.b if p.a == best else p.a) for p in pairs if best in (p.a, p.b)})
        if near:
            parts.append(f"{m}: {', '.join(near)} vs the best ({_label(a, best)})")
    if not total:
        return ""
    return (
        f"Within training noise (difference below the seed spread; {total} pair(s) in all, listed in "
        "the json export and the HTML report): " + "; ".join(parts) + "."
    )


def _label(a: Analysis, key: str) -> str:
    row = next(r for r in a.ranked if r.key == key)
    return f"{row.label} / {row.loss}" if row.loss != "–" else row.label


LEGEND = (
    "Cells: mean over test cases [bootstrap 95% CI; two levels, runs then cases, when a row has several "
    "seeds/folds]; (k ∞) / (k NaN): infinite values are in the mean, NaN (undefined) ones are left out. "
    "Bold: best; ≈: not significantly different from the best (Wilcoxon signed-rank on paired cases, Holm "
    f"over the table's pairs, α {ALPHA}). #: combined rank (mean of the metric ranks); human: second "
    "annotator against the first, not ranked. What each number means: docs/leaderboard.md."
)


def legend(a: Analysis) -> str:
    """The per-table line: bootstrap settings and the combined rank's metric set."""
    return (
        f"Intervals: {a.n_resamples} bootstrap resamples, seed {a.seed}. "
        f"# ranks by the mean rank of {', '.join(a.rank_metrics) or 'no metric'}."
    )


def _ranking_md(a: Analysis) -> list[str]:
    st = a.stability
    assert st is not None
    m0 = a.rank_metrics[0]
    head = [
        "model",
        "loss",
        "# combined",
        f"# {m0} (mean)",
        f"# {m0} (cases)",
        "P(#1)",
        "rank 95%",
        f"seed var {m0}",
    ]
    lines = [
        f"Ranking stability ({st.n_resamples} paired bootstrap resamples of cases and seeds, "
        f"seed {st.seed}): "
        "Kendall τ to the full ranking median {:.2f} [{:.2f}, {:.2f}].".format(*stats.tau_summary(st.tau)),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for i, row in enumerate(a.ranked):
        share = a.row_stats[row.key][m0].seed_share
        lines.append(
            "| "
            + " | ".join(
                [
                    _md_escape(row.label),
                    _md_escape(row.loss),
                    f"{st.full[i]:.0f}",
                    f"{a.agg_rank[m0][row.key]:.0f}",
                    f"{a.case_rank[m0][row.key]:.2f}",
                    f"{st.p_first[i]:.2f}",
                    f"{st.lo[i]:.0f}–{st.hi[i]:.0f}",
                    "–" if math.isnan(share) else f"{100 * share:.0f}%",
                ]
            )
            + " |"
        )
    return lines


def _header() -> list[str]:
    return [
        "# segbench leaderboard",
        "",
        "Generated by `segbench leaderboard` from the run records under `results/`; do not edit by hand.",
        "",
        LEGEND,
        "",
    ]


def _problems_md(problems: Sequence[tuple[Path, str]]) -> list[str]:
    if not problems:
        return []
    return ["## Records left out", ""] + [f"- `{p}` — {reason}" for p, reason in problems] + [""]


def render_analyses(
    analyses: Sequence[Analysis],
    fmt: str = "md",
    *,
    links_base: str | None = None,
    problems: Sequence[tuple[Path, str]] = (),
) -> str:
    """Render analysed tables as ``md``, ``csv``, ``json`` or ``latex`` (see :mod:`bench.report`)."""
    if fmt != "md":
        from bench import report

        return report.render_export(analyses, fmt, problems=problems)
    parts = _header()
    if not analyses:
        parts.append("No run records yet: `segbench run` writes them.\n")
    for a in analyses:
        links = plot_links(a, links_base) if links_base is not None else None
        parts += [render_table_md(a, links), ""]
    parts += _problems_md(problems)
    return "\n".join(parts).rstrip() + "\n"


FORMATS = ("md", "csv", "json", "latex")


def render(
    records: Iterable[Mapping[str, Any]],
    fmt: str = "md",
    *,
    results_dir: Path | None = None,
    plots: bool = True,
    metrics: Sequence[str] | None = None,
    problems: Sequence[tuple[Path, str]] = (),
    links_base: str | None = None,
    seed: int = 0,
    n_resamples: int = stats.N_RESAMPLES,
) -> str:
    """The leaderboard of ``records`` as text in ``fmt``.

    With ``results_dir`` and ``plots``, the PNGs are rendered under ``<results_dir>/plots/`` and the
    Markdown links to them (relative to ``links_base``, default ``<results_dir>/plots``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    analyses = [
        analyse(t, metrics=metrics, seed=seed, n_resamples=n_resamples) for t in group_records(records)
    ]
    if results_dir is not None and plots:
        from bench import plots as _plots

        for a in analyses:
            _plots.render_plots(a, Path(results_dir))
        if links_base is None:
            links_base = str(Path(results_dir) / "plots")
    return render_analyses(analyses, fmt, links_base=links_base if plots else None, problems=problems)


def write_leaderboard(
    results: Path,
    out: Path,
    *,
    fmt: str = "md",
    plots: bool = True,
    report: bool = True,
    metrics: Sequence[str] | None = None,
) -> Path:
    """Render the records under ``results`` into ``out`` (atomically), plus plots and the HTML report.

    Raises:
        ValueError: when ``results`` holds no record (``out`` is left untouched) or ``fmt`` is unknown.
    """
    results, out = Path(results), Path(out)
    if fmt not in FORMATS:
        raise ValueError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    records, problems = scan_records(results) if results.is_dir() else ([], [])
    if not records:
        raise ValueError(f"{results}: no run record found (`segbench run` writes them)")
    shown = [(p.relative_to(results) if p.is_relative_to(results) else p, why) for p, why in problems]
    analyses = [analyse(t, metrics=metrics) for t in group_records(records)]
    links_base = None
    if plots:
        from bench import plots as _plots

        for a in analyses:
            _plots.render_plots(a, results)
        links_base = Path(os.path.relpath((results / "plots").resolve(), out.parent.resolve())).as_posix()
    if report:
        from bench import report as _report

        _report.write_report(analyses, results, problems=shown, plots=plots)
    write_text_atomic(out, render_analyses(analyses, fmt, links_base=links_base, problems=shown))
    return out
