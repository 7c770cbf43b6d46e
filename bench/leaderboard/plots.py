"""Leaderboard figures (matplotlib PNG under ``<results>/plots/<table>/``).

Per table: ``cases.png`` (per-metric dots and boxplots over test cases), ``blob.png`` (rank
stability, challengeR's blob plot), ``significance.png`` (Holm-corrected pairwise tests),
``reliability.png`` (when at least one row saved probabilities) and ``example_<case>.png``
(qualitative panels: image, label and each row's prediction with false positives and negatives
coloured). Which figures a table has is :meth:`~bench.leaderboard.analysis.Analysis.plot_names`;
everything drawn comes from the :class:`~bench.leaderboard.analysis.Analysis` plus the prediction
files it names. Figures are drawn in this process, or with ``workers > 1`` in a process pool, one
figure per task (the same pixels either way). What each shows: ``docs/leaderboard.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bench.leaderboard import stats  # noqa: E402
from bench.leaderboard.analysis import Analysis, example_file  # noqa: E402
from bench.leaderboard.format import row_title  # noqa: E402
from bench.metrics.calibration import calibration_stats  # noqa: E402
from bench.metrics.registry import metric_info  # noqa: E402

MAX_ROWS = 20  # rows drawn in the box, blob and significance plots (best combined ranks first)
EXAMPLE_ROWS = 6  # qualitative panels: rows shown per case
N_BINS = 15  # reliability diagram bins (the ECE's)
DPI = 90
LABEL_WIDTH = 32  # characters of a row's name on an axis or in a legend


def render_plots(analyses: Sequence[Analysis], results: Path, *, workers: int = 1) -> list[dict[str, Any]]:
    """Write the figures of every table under ``<results>/plots/<table>/``; per table
    ``{"files": [...], "skipped": {what: reason}}``, and what was skipped also goes to the table's
    ``plot_notes``.

    Args:
        workers: processes drawing at once; 1 (the default) draws everything in this process.
    """
    results = Path(results)
    jobs = [
        (a, results, results / "plots" / a.table.slug / name) for a in analyses for _, name in a.plot_names()
    ]
    for a in analyses:
        (results / "plots" / a.table.slug).mkdir(parents=True, exist_ok=True)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            skipped = list(pool.map(_draw, *zip(*jobs)))
    else:
        skipped = [_draw(*job) for job in jobs]
    done = []
    for a in analyses:
        mine = [(path, skips) for (b, _, path), skips in zip(jobs, skipped) if b is a]
        notes = {k: v for _, skips in mine for k, v in skips.items()}
        a.plot_notes.update(notes)
        done.append({"files": [path for path, _ in mine], "skipped": notes})
    return done


def _draw(a: Analysis, results: Path, path: Path) -> dict[str, str]:
    """Draw the figure ``path.name`` of :meth:`Analysis.plot_names`; returns what was skipped."""
    name = path.name
    if name == "cases.png":
        _cases(a, path)
    elif name == "blob.png":
        _blob(a, path)
    elif name == "significance.png":
        _significance(a, path)
    elif name == "reliability.png":
        return _reliability(a, results, path)
    else:
        case = next(c for c in a.example_cases() if name == example_file(c))
        _example(a, results, case, path)
    return {}


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _title(ax: plt.Axes, text: str, size: float) -> None:
    """An axes title at matplotlib's default place (``y=1``, just above the axes). Stating ``y``
    turns off the automatic placement that measures every tick label to clear top-side ticks,
    which these panels do not have: the same picture, without about 15 ms per panel."""
    ax.set_title(text, fontsize=size, y=1.0)


def _label_room(labels: list[str]) -> float:
    """Inches under a panel for tick labels rotated by 60° at 7 pt."""
    return 0.35 + 0.043 * max((len(t) for t in labels), default=0)


def _grid(
    n: int, width: float, height: float, *, cols: int = 3, below: float = 1.9, left: float = 0.7, **kw: Any
) -> tuple[plt.Figure, np.ndarray]:
    """``n`` panels of ``width`` × ``height`` inches in rows of ``cols``, with ``below`` inches under each
    row for its (rotated) tick labels and ``left`` inches for the y labels. A fixed layout: matplotlib's
    constrained layout costs more than drawing the figure."""
    cols = min(cols, n)
    nrows = math.ceil(n / cols)
    title, gap = 0.7, 0.4
    fig_w = left + cols * width + (cols - 1) * gap + 0.2
    fig_h = title + nrows * (height + below + 0.3) - 0.3
    fig, axes = plt.subplots(nrows, cols, figsize=(fig_w, fig_h), squeeze=False, **kw)
    fig.subplots_adjust(
        left=left / fig_w,
        right=1 - 0.2 / fig_w,
        top=1 - title / fig_h,
        bottom=below / fig_h,
        wspace=gap / width,
        hspace=(below + 0.3) / height,
    )
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax in axes.ravel()[:n]:
        ax.xaxis.set_tick_params(labelbottom=True)
    return fig, axes.ravel()


def _cases(a: Analysis, path: Path) -> None:
    rows = a.ranked[:MAX_ROWS] + [r for r in a.human if r.done]
    below = _label_room([row_title(r, LABEL_WIDTH) + " (+99∞)" for r in rows])
    fig, axes = _grid(len(a.rank_metrics), max(2.5, 0.3 * len(rows) + 0.5), 2.6, below=below)
    rng = np.random.default_rng(0)
    for ax, m in zip(axes, a.rank_metrics):
        data, labels = [], []
        for row in rows:
            vals = a.pooled[row.key][m]
            finite = vals[np.isfinite(vals)]
            n_inf = int(np.isinf(vals).sum())
            data.append(finite)
            labels.append(row_title(row, LABEL_WIDTH) + (f" (+{n_inf}∞)" if n_inf else ""))
        ax.boxplot([d if d.size else [np.nan] for d in data], widths=0.5, showfliers=False)
        xs = np.concatenate([np.full(d.size, i + 1.0) for i, d in enumerate(data)])
        ax.scatter(
            xs + rng.uniform(-0.15, 0.15, xs.size), np.concatenate(data), s=8, alpha=0.6, color="tab:blue"
        )
        ax.set_xticks(range(1, len(rows) + 1), labels, rotation=60, ha="right", fontsize=7)
        _title(ax, f"{m} {metric_info(m).arrow}", 9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{a.table.label}: per-case values", fontsize=10)
    _save(fig, path)


def _blob(a: Analysis, path: Path) -> None:
    panels = [("combined rank", a.stability)] + [(m, a.metric_stability[m]) for m in a.rank_metrics]
    rows = a.ranked[:MAX_ROWS]
    n = len(rows)
    fig, axes = _grid(
        len(panels),
        max(2.5, 0.3 * n + 0.5),
        2.6,
        below=_label_room([row_title(r, LABEL_WIDTH) for r in rows]),
    )
    for ax, (title, st) in zip(axes, panels):
        assert st is not None
        xs, ys = np.nonzero(st.freq[:n] > 0)
        ax.scatter(xs + 1, ys + 1, s=400 * st.freq[xs, ys], alpha=0.5, color="tab:blue")
        ax.vlines(np.arange(1, n + 1), st.lo[:n], st.hi[:n], color="black", lw=1)
        ax.scatter(np.arange(1, n + 1), st.full[:n], marker="x", color="tab:red", s=25, zorder=3)
        ax.set_xticks(
            range(1, n + 1), [row_title(r, LABEL_WIDTH) for r in rows], rotation=60, ha="right", fontsize=7
        )
        ax.set_ylim(st.freq.shape[1] + 0.5, 0.5)
        ax.set_ylabel("rank", fontsize=8)
        _title(ax, f"{title} (τ median {stats.tau_summary(st.tau)[0]:.2f})", 9)
    fig.suptitle(f"{a.table.label}: ranks over {a.n_resamples} bootstrap resamples", fontsize=10)
    _save(fig, path)


def _significance(a: Analysis, path: Path) -> None:
    rows = a.ranked[:MAX_ROWS]
    keys = [r.key for r in rows]
    n = len(rows)
    side = max(2.0, 0.25 * n + 0.5)
    fig, axes = _grid(len(a.rank_metrics), side, side, below=0.5, left=2.4, sharey=True)
    cmap = matplotlib.colors.ListedColormap(["#d6604d", "#f0f0f0", "#4393c3"])
    for ax, m in zip(axes, a.rank_metrics):
        grid = np.zeros((n, n))
        up = metric_info(m).higher_is_better
        for pr in a.pairs.get(m, []):
            if pr.a not in keys or pr.b not in keys or not pr.significant:
                continue
            i, j = keys.index(pr.a), keys.index(pr.b)
            better = (pr.paired.diff > 0) == up
            grid[i, j], grid[j, i] = (1, -1) if better else (-1, 1)
        ax.imshow(grid, cmap=cmap, vmin=-1, vmax=1)
        ax.set_xticks(range(n), [str(i + 1) for i in range(n)], fontsize=7)
        ax.set_yticks(
            range(n), [f"{i + 1}. {row_title(r, LABEL_WIDTH)}" for i, r in enumerate(rows)], fontsize=7
        )
        _title(ax, f"{m} {metric_info(m).arrow}", 9)
    fig.suptitle(
        f"{a.table.label}: row better (blue) / worse (red) than column; grey: not significant\n"
        f"(Wilcoxon signed-rank, Holm-corrected over the table's pairs, α {stats.ALPHA})",
        fontsize=9,
    )
    _save(fig, path)


def _reliability(a: Analysis, results: Path, path: Path) -> dict[str, str]:
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    skipped = {}
    for row in a.ranked[:MAX_ROWS]:
        total = None
        for pred in a.info[row.key].predictions:
            try:
                with np.load(results / pred.path) as z:
                    if "prob" not in z.files:
                        continue
                    prob, label = z["prob"].astype(np.float32), z["label"]
                    fov = z["fov"] if "fov" in z.files else None
            except (OSError, ValueError):
                continue
            p = prob[1] if prob.shape[0] == 2 else prob
            s = calibration_stats(np.clip(p, 0, 1), label, n_bins=N_BINS, mask=fov)
            total = s if total is None else total + s
        if total is None:
            skipped[row_title(row, LABEL_WIDTH)] = "no saved probabilities (eval.save_probabilities off)"
            continue
        total = np.concatenate([total[:, : N_BINS - 1], total[:, N_BINS - 1 :].sum(1, keepdims=True)], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc, conf = total[2] / total[0], total[1] / total[0]
        ok = total[0] > 0
        ax.plot(conf[ok], acc[ok], marker="o", ms=3, label=row_title(row, LABEL_WIDTH))
    ax.set_xlabel("confidence", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    _title(ax, f"{a.table.label}: reliability ({N_BINS} bins)", 9)
    ax.legend(fontsize=6)
    _save(fig, path)
    return {f"reliability: {k}": v for k, v in skipped.items()}


def _slice(x: np.ndarray) -> np.ndarray:
    """A 2D view: the middle slice along the first axis of a 3D volume."""
    return x[x.shape[0] // 2] if x.ndim == 3 else x


def _overlay(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """RGB: true positives white, false positives red, false negatives blue, background black."""
    rgb = np.zeros((*pred.shape, 3))
    fg_p, fg_t = pred > 0, label > 0
    rgb[fg_p & fg_t & (pred == label)] = (1, 1, 1)
    rgb[fg_p & ~(fg_t & (pred == label))] = (0.9, 0.15, 0.15)
    rgb[fg_t & ~fg_p] = (0.2, 0.4, 1.0)
    return rgb


def _example(a: Analysis, results: Path, case: str, path: Path) -> None:
    panels: list[tuple[str, np.ndarray | None, dict[str, Any]]] = []
    image = label = None
    for row in (a.ranked + [r for r in a.human if r.done])[:EXAMPLE_ROWS]:
        saved = next((p for p in a.info[row.key].predictions if p.case == case), None)
        if saved is None:
            panels.append((row_title(row, LABEL_WIDTH), None, {}))
            continue
        try:
            with np.load(results / saved.path) as z:
                pred = _slice(z["pred"])
                if image is None:
                    image, label = _slice(z["image"].astype(np.float32)), _slice(z["label"])
        except (OSError, ValueError, KeyError):
            panels.append((row_title(row, LABEL_WIDTH), None, {}))
            continue
        panels.append((row_title(row, LABEL_WIDTH), pred, saved.values))
    fig, axes = plt.subplots(1, len(panels) + 2, figsize=(2.4 * (len(panels) + 2), 2.8), squeeze=False)
    axes = axes.ravel()
    if image is not None:
        axes[0].imshow(image, cmap="gray")
        axes[1].imshow(label > 0, cmap="gray")
    _title(axes[0], "image", 8)
    _title(axes[1], "label", 8)
    for ax, (title, pred, vals) in zip(axes[2:], panels):
        if pred is None or label is None:
            ax.text(0.5, 0.5, "not saved", ha="center", va="center", fontsize=8)
        else:
            ax.imshow(_overlay(pred, label))
            errs = [f"β{k} err {vals[f'betti{k}_err']:.0f}" for k in (0, 1) if f"betti{k}_err" in vals]
            title += "\n" + ", ".join(errs)
        _title(ax, title, 7)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{a.table.label}, case {case}: white TP, red FP, blue FN", fontsize=9)
    _save(fig, path)
