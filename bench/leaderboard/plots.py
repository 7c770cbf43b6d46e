"""Leaderboard figures (matplotlib PNG under ``<results>/plots/<table>/``).

Per table: ``cases.png`` (per-metric dots and boxplots over test cases), ``blob.png`` (rank
stability, challengeR's blob plot), ``significance.png`` (Holm-corrected pairwise tests),
``reliability.png`` (when at least one row saved probabilities), ``curves.png`` (the runs' learning
curves, ``val_trace``, when at least one run recorded one) and ``example_<case>.png``
(qualitative panels: image, label and each row's prediction with false positives and negatives
coloured). Which figures a table has is :meth:`~bench.leaderboard.analysis.Analysis.plot_names`;
everything drawn comes from the :class:`~bench.leaderboard.analysis.Analysis` plus the prediction
files it names. Figures are drawn in this process, or with ``workers > 1`` in a process pool, one
figure per task (the same pixels either way). What each shows: ``docs/leaderboard.md``.
"""

from __future__ import annotations

import math
import textwrap
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
from bench.leaderboard.format import primary_metric, rank_text, row_title, significance_note  # noqa: E402
from bench.leaderboard.rows import Row  # noqa: E402
from bench.metrics.calibration import calibration_stats  # noqa: E402
from bench.metrics.registry import metric_info  # noqa: E402

EXAMPLE_ROWS = 6  # qualitative panels: rows shown per case (the best-ranked that saved it; the title says so)
STRETCH = (1.0, 99.0)  # percentiles each channel of a colour example image is stretched between
DISPLAY_PIXELS = 240  # a grey example image is averaged down to about this many pixels a side
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


def remove_stale_plots(results: Path, keep: set[str]) -> list[Path]:
    """Remove the figure folders under ``<results>/plots/`` of tables the records no longer have
    (a renamed or emptied table), when they hold nothing but PNG files; returns the folders removed.
    A folder holding anything else is left alone: segbench never deletes what it did not write."""
    removed = []
    base = Path(results) / "plots"
    for folder in sorted(base.iterdir()) if base.is_dir() else []:
        if not folder.is_dir() or folder.name in keep or folder.name.startswith("."):
            continue
        files = list(folder.iterdir())
        if all(f.is_file() and f.suffix == ".png" for f in files):
            for f in files:
                f.unlink()
            folder.rmdir()
            removed.append(folder)
    return removed


def _draw(a: Analysis, results: Path, path: Path) -> dict[str, str]:
    """Draw the figure ``path.name`` of :meth:`Analysis.plot_names`; returns what was skipped."""
    name = path.name
    if name == "cases.png":
        _cases(a, path)
    elif name == "blob.png":
        _blob(a, path)
    elif name == "significance.png":
        return _significance(a, path)
    elif name == "reliability.png":
        return _reliability(a, results, path)
    elif name == "curves.png":
        return _curves(a, path)
    else:
        case = next(c for c in a.example_cases() if name == example_file(c))
        return _example(a, results, case, path)
    return {}


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _title(ax: plt.Axes, text: str, size: float) -> None:
    """An axes title at matplotlib's default place (``y=1``, just above the axes). Stating ``y``
    turns off the automatic placement that measures every tick label to clear top-side ticks,
    which these panels do not have: the same picture, without about 15 ms per panel."""
    ax.set_title(text, fontsize=size, y=1.0)


def _suptitle(fig: plt.Figure, text: str, size: float) -> None:
    """The figure's title, its top 0.08 inch below the figure's top edge whatever the figure's height
    (matplotlib's default ``y=0.98`` is a fraction: on a tall figure it lands on the first panel),
    wrapped to the figure's width (a character taken as 0.6 of the font size wide), so that a long
    table label is not cut at both edges."""
    width, height = fig.get_size_inches()
    chars = max(20, int(width * 72 / (0.6 * size)))
    fig.suptitle(textwrap.fill(text, chars), fontsize=size, y=1 - 0.08 / height, va="top")


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


def _cols(width: float, n: int, budget: float = 21.0) -> int:
    """Panels per figure row: up to 3, as many as fit in ``budget`` inches."""
    return max(1, min(3, n, int(budget // max(width, 1e-9))))


def _rows_text(n: int, human: int = 0) -> str:
    """``all 92 rows`` (+ the human baseline): what a per-row figure shows, said in its title."""
    text = f"all {n} ranked row{'s' if n != 1 else ''}, in # order"
    return text + (" + human baseline" if human else "")


def _titles(a: Analysis, rows: Sequence[Row]) -> list[str]:
    """The rows' names on an axis or in a legend, cut to :data:`LABEL_WIDTH`. When two cut names
    coincide (``nnunet_plain (tta none, preset …`` at two presets), every name gets the row's ``#``
    from the table in front (``#1 ``, ``#3 ``), so that the figure still tells the rows apart."""
    cut = [row_title(r, LABEL_WIDTH) for r in rows]
    if len(set(cut)) == len(cut):
        return cut
    return [f"#{rank_text(a, r)} {c}" for r, c in zip(rows, cut)]


def _tick_size(n: int) -> float:
    return 7 if n <= 40 else 6


def _cases(a: Analysis, path: Path) -> None:
    human = [r for r in a.human if r.done]
    rows = a.ranked + human
    names = _titles(a, rows)
    below = _label_room([t + " (+99∞)" for t in names])
    width = max(2.5, 0.3 * len(rows) + 0.5)
    n = len(a.rank_metrics)
    fig, axes = _grid(n, width, 2.6, cols=_cols(width, n), below=below)
    rng = np.random.default_rng(0)
    for ax, m in zip(axes, a.rank_metrics):
        data, labels = [], []
        for row, name in zip(rows, names):
            vals = a.pooled[row.key][m]
            finite = vals[np.isfinite(vals)]
            n_inf = int(np.isinf(vals).sum())
            data.append(finite)
            labels.append(name + (f" (+{n_inf}∞)" if n_inf else ""))
        ax.boxplot([d if d.size else [np.nan] for d in data], widths=0.5, showfliers=False)
        xs = np.concatenate([np.full(d.size, i + 1.0) for i, d in enumerate(data)])
        ax.scatter(
            xs + rng.uniform(-0.15, 0.15, xs.size), np.concatenate(data), s=8, alpha=0.6, color="tab:blue"
        )
        ax.set_xticks(
            range(1, len(rows) + 1), labels, rotation=60, ha="right", fontsize=_tick_size(len(rows))
        )
        _title(ax, f"{m} {metric_info(m).arrow}", 9)
        ax.grid(axis="y", alpha=0.3)
    _suptitle(fig, f"{a.table.label}: per-case values ({_rows_text(len(a.ranked), len(human))})", 10)
    _save(fig, path)


def _blob(a: Analysis, path: Path) -> None:
    m0 = primary_metric(a)
    order = [m for m in a.rank_metrics if m == m0] + [m for m in a.rank_metrics if m != m0]
    panels = [(m, a.metric_stability[m]) for m in order if m in a.metric_stability]
    if a.stability is not None and all(a.stability is not st for _, st in panels):
        panels.insert(1, ("combined rank", a.stability))  # an analysis that resamples it too
    rows = a.ranked
    n = len(rows)
    width = max(2.5, 0.3 * n + 0.5)
    fig, axes = _grid(
        len(panels),
        width,
        2.6,
        cols=_cols(width, len(panels)),
        below=_label_room(_titles(a, rows)),
    )
    for ax, (title, st) in zip(axes, panels):
        assert st is not None
        xs, ys = np.nonzero(st.freq[:n] > 0)
        ax.scatter(xs + 1, ys + 1, s=400 * st.freq[xs, ys], alpha=0.5, color="tab:blue")
        ax.vlines(np.arange(1, n + 1), st.lo[:n], st.hi[:n], color="black", lw=1)
        ax.scatter(np.arange(1, n + 1), st.full[:n], marker="x", color="tab:red", s=25, zorder=3)
        ax.set_xticks(
            range(1, n + 1),
            _titles(a, rows),
            rotation=60,
            ha="right",
            fontsize=_tick_size(n),
        )
        ax.set_ylim(st.freq.shape[1] + 0.5, 0.5)
        ax.set_ylabel("rank", fontsize=8)
        _title(ax, f"{title} (τ median {stats.tau_summary(st.tau)[0]:.2f})", 9)
    _suptitle(fig, f"{a.table.label}: ranks over {a.n_resamples} bootstrap resamples ({_rows_text(n)})", 10)
    _save(fig, path)


CURVE_ROWS = 10
"""Rows per learning-curve panel (the best-ranked first; further rows go to further panels)."""


def _curves(a: Analysis, path: Path) -> dict[str, str]:
    """Learning curves: each run's ``val_dice`` against the optimiser step (thin), and per row the
    mean over its runs at the steps they share (thick), titled with the row's convergence verdict
    (:mod:`bench.leaderboard.convergence`). Rows without a curve are named in what is skipped."""
    rows = [r for r in a.ranked if any(len(rec.val_trace) > 1 for rec in r.done)]
    missing = [row_title(r, LABEL_WIDTH) for r in a.ranked if r not in rows]
    chunks = [rows[i : i + CURVE_ROWS] for i in range(0, len(rows), CURVE_ROWS)]
    fig, axes = _grid(len(chunks), 5.5, 3.2, cols=min(2, len(chunks)), below=0.6)
    colours = plt.get_cmap("tab10")
    names = dict(zip([r.key for r in rows], _titles(a, rows)))
    for ax, chunk in zip(axes, chunks):
        for i, row in enumerate(chunk):
            colour = colours(i % 10)
            traces = [
                np.array([[p[0], p[1]] for p in rec.val_trace], float) for rec in row.done if rec.val_trace
            ]
            for t in traces:
                ax.plot(t[:, 0], t[:, 1], color=colour, lw=0.6, alpha=0.4)
            shared = sorted(set.intersection(*(set(t[:, 0].tolist()) for t in traces)))
            if shared:
                mean = [np.nanmean([t[t[:, 0] == s, 1][0] for t in traces]) for s in shared]
                verdict = a.convergence.get(row.key)
                flag = " (not converged)" if verdict is not None and verdict.status == "not converged" else ""
                ax.plot(shared, mean, color=colour, lw=1.8, label=names[row.key] + flag)
        ax.set_xlabel("optimiser step", fontsize=8)
        ax.set_ylabel("validation Dice", fontsize=8)
        ax.legend(fontsize=6, loc="lower right")
        ax.grid(alpha=0.3)
    _suptitle(fig, f"{a.table.label}: learning curves (thin: each run, thick: the row's mean)", 10)
    _save(fig, path)
    return {"learning curves": f"no recorded curve for {', '.join(missing)}"} if missing else {}


def _significance(a: Analysis, path: Path) -> dict[str, str]:
    rows = a.ranked
    keys = [r.key for r in rows]
    n = len(rows)
    side = max(2.0, min(0.25 * n, 14.0) + 0.5)
    cols = _cols(side, len(a.rank_metrics), 30)
    fig, axes = _grid(len(a.rank_metrics), side, side, cols=cols, below=0.5, left=2.4, sharey=True)
    cmap = matplotlib.colors.ListedColormap(["#d6604d", "#f0f0f0", "#4393c3"])
    size = _tick_size(n) if n <= 60 else 5
    notes: dict[str, list[str]] = {}
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
        ax.set_xticks(range(n), [str(i + 1) for i in range(n)], fontsize=size, rotation=90 if n > 30 else 0)
        names = [f"{i + 1}. {row_title(r, LABEL_WIDTH)}" for i, r in enumerate(rows)]
        ax.set_yticks(range(n), names, fontsize=size)
        _title(ax, f"{m} {metric_info(m).arrow}", 9)
        why = significance_note(a, m)
        if why:
            notes.setdefault(why, []).append(m)
            ax.text(
                0.5,
                0.5,
                textwrap.fill(f"All grey: {why}.", 34),
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "#888", "boxstyle": "round,pad=0.4"},
            )
    _suptitle(
        fig,
        f"{a.table.label}: row better (blue) / worse (red) than column; grey: not significant\n"
        f"(Wilcoxon signed-rank, Holm-corrected over the table's pairs, α {stats.ALPHA}; {_rows_text(n)})",
        9,
    )
    _save(fig, path)
    return {f"significance ({', '.join(ms)})": why for why, ms in notes.items()}


def _reliability(a: Analysis, results: Path, path: Path) -> dict[str, str]:
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    skipped = {}
    names = dict(zip([r.key for r in a.ranked], _titles(a, a.ranked)))
    for row in a.ranked:
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
        ax.plot(conf[ok], acc[ok], marker="o", ms=3, label=names[row.key])
    ax.set_xlabel("confidence", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    _title(ax, f"{a.table.label}: reliability ({N_BINS} bins)", 9)
    ax.legend(fontsize=6)
    _save(fig, path)
    return {f"reliability: {k}": v for k, v in skipped.items()}


def _slice(x: np.ndarray) -> np.ndarray:
    """A 2D view: the middle slice along the first axis of a 3D volume."""
    return x[x.shape[0] // 2] if x.ndim == 3 else x


def _stretch(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """One colour channel scaled to [0, 1] between its :data:`STRETCH` percentiles (inside ``mask``
    when it holds pixels; 0 outside it)."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float32))
    inside = mask is not None and mask.shape == x.shape and bool(mask.any())
    lo, hi = np.percentile(x[mask] if inside else x, STRETCH)
    out = np.clip((x - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(x)
    return np.where(mask, out, 0.0) if inside else out


def _percentile_stretch(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """A grey image as each pixel's percentile among the pixels inside ``mask`` (all pixels without
    one; 0 outside it), ties at their middle: faint structure squeezed into a few grey levels (the
    vessels of one fundus channel, most of it saturated) spreads over the whole range."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float32))
    inside = mask is not None and mask.shape == x.shape and bool(mask.any())
    ref = np.sort(x[mask] if inside else x, axis=None)
    if ref.size == 0 or ref[0] == ref[-1]:
        return np.zeros_like(x)
    rank = (np.searchsorted(ref, x, "left") + np.searchsorted(ref, x, "right")) / (2.0 * ref.size)
    return np.where(mask, rank, 0.0) if inside else rank


def display_image(
    image: np.ndarray, label: np.ndarray, fov: np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    """The 2D picture of a saved image and what it shows.

    Args:
        image: ``(C, *spatial)`` (every channel, as saved now) or ``(*spatial)`` (one channel, as
            older files hold it).
        label: ``(*spatial)``, the shape that tells the two apart.
        fov: ``(*spatial)`` field of view, or None: the stretch looks at the pixels inside it.

    Returns:
        ``(H, W, 3)`` colour in [0, 1] for three channels (each stretched between its 1st and 99th
        percentiles), else ``(H, W)`` grey in [0, 1] (the first channel, each pixel at its
        percentile); the middle slice of a 3D image; and the panel's title.
    """
    image = np.asarray(image, dtype=np.float32)
    channels = image[None] if image.ndim == label.ndim else image
    mask = None if fov is None else _slice(np.asarray(fov, dtype=bool))
    planes = [_slice(c) for c in channels]
    if len(planes) == 3:
        return np.stack([_stretch(p, mask) for p in planes], axis=-1), "image (RGB)"
    which = ", the one channel saved" if image.ndim == label.ndim else ""
    which = f", channel 1 of {len(planes)}" if len(planes) > 1 else which
    f = max(1, min(planes[0].shape) // DISPLAY_PIXELS)  # averaged to about the panel's resolution first
    grey = _percentile_stretch(
        _block_mean(planes[0], f), None if mask is None else _block_mean(mask, f) > 0.5
    )
    return grey, f"image{which} (percentile-stretched)"


def _block_mean(x: np.ndarray, f: int) -> np.ndarray:
    """``x`` (2D) averaged over ``f × f`` blocks (its edge rows and columns beyond a multiple of ``f``
    dropped): a picture at about the resolution it is shown at, without single-pixel noise."""
    if f <= 1:
        return np.asarray(x, dtype=np.float32)
    h, w = (x.shape[0] // f) * f, (x.shape[1] // f) * f
    return np.asarray(x[:h, :w], dtype=np.float32).reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _overlay(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """RGB: true positives white, false positives red, false negatives blue, background black."""
    rgb = np.zeros((*pred.shape, 3))
    fg_p, fg_t = pred > 0, label > 0
    rgb[fg_p & fg_t & (pred == label)] = (1, 1, 1)
    rgb[fg_p & ~(fg_t & (pred == label))] = (0.9, 0.15, 0.15)
    rgb[fg_t & ~fg_p] = (0.2, 0.4, 1.0)
    return rgb


def _example(a: Analysis, results: Path, case: str, path: Path) -> dict[str, str]:
    fig, missing = example_figure(a, results, case)
    _save(fig, path)
    return {f"example {case}": missing} if missing else {}


def _wrap(text: str, width: int = 30, lines: int = 3) -> str:
    return textwrap.fill(text, width, max_lines=lines, placeholder=" …", break_on_hyphens=False)


def example_figure(a: Analysis, results: Path, case: str) -> tuple[plt.Figure, str]:
    """The qualitative figure of ``case``: image, label and the prediction of each of the best-ranked
    :data:`EXAMPLE_ROWS` rows that saved it; returns the figure and, in words, the rows left out
    (those that saved no prediction of the case), ``""`` when none was."""
    candidates = a.ranked + [r for r in a.human if r.done]
    saved = [(r, next((p for p in a.info[r.key].predictions if p.case == case), None)) for r in candidates]
    have = [(r, p) for r, p in saved if p is not None]
    panels: list[tuple[str, np.ndarray | None, dict[str, Any]]] = []
    image = label = fov = None
    for row, pred_ref in have[:EXAMPLE_ROWS]:
        title = _wrap(row_title(row))
        try:
            with np.load(results / pred_ref.path) as z:
                pred = _slice(z["pred"])
                if image is None:
                    label = z["label"]
                    fov = z["fov"] if "fov" in z.files else None
                    image = z["image"] if "image" in z.files else None
        except (OSError, ValueError, KeyError):
            panels.append((title, None, {"missing": f"prediction file {pred_ref.path} could not be read"}))
            continue
        panels.append((title, pred, pred_ref.values))
    left_out = _left_out(a, [r for r, p in saved if p is None], len(have))
    titles = []
    for title, pred, vals in panels:
        errs = [f"β{k} err {vals[f'betti{k}_err']:.0f}" for k in (0, 1) if f"betti{k}_err" in vals]
        titles.append(title + ("\n" + ", ".join(errs) if errs and pred is not None else ""))
    image_title = "image"
    shown = None
    if label is not None and image is not None:
        shown, image_title = display_image(image, label, fov)
    elif label is not None:
        image_title = "image: not in the prediction file"
    image_title = _wrap(image_title, 26)
    n = len(panels) + 2
    fig_w = 2.5 * n + 0.2
    note = "\n".join(textwrap.fill(part, int(fig_w * 12)) for part in left_out.splitlines())
    lines = max(t.count("\n") + 1 for t in [image_title, *titles])
    note_h = 0.14 * (note.count("\n") + 1) + 0.06 if note else 0.0
    top = 0.42 + note_h + 0.15 * lines + 0.1  # suptitle, the note under it, the panel titles
    fig_h = 2.4 + top + 0.1
    fig, axes = plt.subplots(1, n, figsize=(fig_w, fig_h), squeeze=False)
    fig.subplots_adjust(
        left=0.1 / fig_w, right=1 - 0.1 / fig_w, top=1 - top / fig_h, bottom=0.1 / fig_h, wspace=0.12
    )
    axes = axes.ravel()
    if shown is not None:
        axes[0].imshow(shown, cmap=None if shown.ndim == 3 else "gray", vmin=0, vmax=1)
    if label is not None:
        axes[1].imshow(_slice(label) > 0, cmap="gray")
    else:
        for ax in axes[:2]:
            ax.text(0.5, 0.5, "no readable prediction file", ha="center", va="center", fontsize=7)
    _title(axes[0], image_title, 7)
    _title(axes[1], "label", 7)
    for ax, (_, pred, vals), title in zip(axes[2:], panels, titles):
        if pred is None or label is None:
            why = _wrap(vals.get("missing", "not readable"), 26, 6)
            ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=7)
        else:
            ax.imshow(_overlay(pred, _slice(label)))
        _title(ax, title, 7)
    for ax in axes:
        ax.axis("off")
    _suptitle(fig, f"{a.table.label}, case {case}: white TP, red FP, blue FN", 9)
    if note:
        fig.text(0.5, 1 - 0.4 / fig_h, note, ha="center", va="top", fontsize=7, color="#444")
    return fig, left_out.replace("\n", "; ")


def _left_out(a: Analysis, rows: list[Any], n_saved: int) -> str:
    """In words: which rows the figure shows and which saved no prediction of the case."""
    parts = []
    if n_saved > EXAMPLE_ROWS:
        parts.append(f"shown: the {EXAMPLE_ROWS} best-ranked of the {n_saved} rows that saved this case")
    if rows:
        none = [a.info[r.key] for r in rows if not a.info[r.key].predictions]
        off = sum(1 for info in none if info.save_predictions == 0)
        why = [
            f"{off} ran with eval.save_predictions 0" if off else "",
            f"{len(none) - off} saved no prediction files" if len(none) > off else "",
            f"{len(rows) - len(none)} saved other cases only" if len(rows) > len(none) else "",
        ]
        parts.append(
            f"not shown: {len(rows)} row{'s' if len(rows) != 1 else ''} without a saved prediction of this "
            f"case ({', '.join(w for w in why if w)})"
        )
    return "\n".join(parts)
