"""Leaderboard figures: every PNG is written, readable and non-empty; missing probabilities are said."""

import inspect
import json
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

import bench.leaderboard as lb
from bench.config import run_from_dict
from bench.leaderboard import html as html_report
from bench.leaderboard import plots
from bench.leaderboard.format import significance_note
from bench.records.predictions import prediction_arrays, read_prediction, write_prediction
from bench.records.store import write_json_atomic

CASES = [f"c{i}" for i in range(6)]


def all_pairs(fn) -> dict:
    """``all_pairs=True`` for ``fn`` where the leaderboard computes the all-pairs tests (the significance
    map) only when asked."""
    return {"all_pairs": True} if "all_pairs" in inspect.signature(fn).parameters else {}


def _save_case(results: Path, run_id: str, case: str, rng, *, prob: bool) -> str:
    label = np.zeros((16, 16), np.uint8)
    label[4:12, 6:9] = 1
    p1 = np.clip(label * 0.8 + rng.uniform(0, 0.3, label.shape), 0, 1)
    arrays = {
        "pred": (p1 > 0.5).astype(np.uint8),
        "label": label,
        "image": rng.random((16, 16)).astype(np.float16),
        "spacing": np.ones(2),
    }
    if prob:
        arrays["prob"] = np.stack([1 - p1, p1]).astype(np.float16)
    rel = f"predictions/{run_id}/{case}.npz"
    (results / rel).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(results / rel, **arrays)
    return rel


def make_results(results: Path, *, prob_rows=("unet",)) -> list[dict]:
    rng = np.random.default_rng(0)
    recs = []
    for model, shift in (("unet", 0.0), ("swin_unetr", 0.05), ("attention_unet", -0.1)):
        for seed in (0, 1):
            cfg = run_from_dict(
                {
                    "dataset": {"name": "drive"},
                    "model": {"name": model},
                    "loss": {"name": "dice_ce"},
                    "seed": seed,
                    "eval": {"save_probabilities": model in prob_rows},
                }
            ).to_dict()
            rid = f"drive-{model}-{seed}"
            cases = [
                {
                    "case_id": c,
                    "dice": 0.7 + shift + 0.02 * i + 0.01 * seed,
                    "cldice": 0.6 + shift,
                    "betti0_err": 3.0 + i,
                    "betti1_err": float(i % 2),
                    "ece": 0.05 - shift / 10,
                    "hd95": np.inf if i == 0 else 4.0,
                }
                for i, c in enumerate(CASES)
            ]
            preds = {c: _save_case(results, rid, c, rng, prob=model in prob_rows) for c in CASES[:2]}
            rec = {
                "schema": 2,
                "kind": "train",
                "run_id": rid,
                "status": "done",
                "config": cfg,
                "cases": cases,
                "predictions": preds,
                "params": 1000,
                "train_seconds": 1.0,
            }
            write_json_atomic(results / f"{rid}.json", rec)
            recs.append(rec)
    return recs


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 2000, path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"))
        assert arr.shape[0] > 100 and arr.shape[1] > 100 and arr.std() > 5  # not a blank canvas


def test_every_plot_is_written_and_non_empty(tmp_path):
    recs = make_results(tmp_path)
    (a,) = lb.analyse_records(recs, n_resamples=200, **all_pairs(lb.analyse_records))
    (done,) = plots.render_plots([a], tmp_path)
    names = [n for _, n in a.plot_names()]
    assert names == [
        "cases.png",
        "blob.png",
        "significance.png",
        "reliability.png",
        "example_c0.png",
        "example_c1.png",
    ]
    assert [p.name for p in done["files"]] == names
    for p in done["files"]:
        _assert_png(p)
    assert done["skipped"] == {
        "reliability: swin_unetr / dice_ce": "no saved probabilities (eval.save_probabilities off)",
        "reliability: attention_unet / dice_ce": "no saved probabilities (eval.save_probabilities off)",
        f"significance ({', '.join(a.rank_metrics)})": significance_note(a, "dice"),  # 6 cases, 3 pairs
    }


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))}


def test_figures_drawn_by_a_process_pool_are_those_drawn_in_process(tmp_path):
    (a,) = lb.analyse_records(make_results(tmp_path), n_resamples=200, **all_pairs(lb.analyse_records))
    (here,) = plots.render_plots([a], tmp_path)
    out, notes = here["files"][0].parent, dict(a.plot_notes)
    in_process = _pixels(out)
    shutil.rmtree(out)
    a.plot_notes.clear()
    (pooled,) = plots.render_plots([a], tmp_path, workers=2)
    assert pooled["files"] == here["files"] and pooled["skipped"] == here["skipped"] and a.plot_notes == notes
    drawn = _pixels(out)
    assert drawn.keys() == in_process.keys() and len(drawn) == 6
    assert all(np.array_equal(drawn[k], in_process[k]) for k in drawn)


def test_reliability_plot_is_left_out_without_probabilities(tmp_path):
    recs = make_results(tmp_path, prob_rows=())
    (a,) = lb.analyse_records(recs, n_resamples=100, **all_pairs(lb.analyse_records))
    assert "reliability.png" not in [n for _, n in a.plot_names()]


def test_overlay_colours_false_positives_and_negatives():
    label = np.array([[1, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0]])
    rgb = plots._overlay(pred, label)
    np.testing.assert_allclose(rgb[0, 0], (1, 1, 1))  # TP white
    np.testing.assert_allclose(rgb[0, 1], (0.2, 0.4, 1.0))  # FN blue
    np.testing.assert_allclose(rgb[0, 2], (0.9, 0.15, 0.15))  # FP red
    np.testing.assert_allclose(rgb[0, 3], (0, 0, 0))


def test_write_leaderboard_links_every_plot_and_the_links_resolve(tmp_path):
    res = tmp_path / "results"
    make_results(res)
    out = lb.write_leaderboard(res, tmp_path / "leaderboard.md", **all_pairs(lb.write_leaderboard))
    text = out.read_text()
    links = [seg.split(")")[0] for seg in text.split("](")[1:]]
    assert len(links) == 6 and all((tmp_path / link).is_file() for link in links)
    assert json.loads(lb.render(json.loads("[]"), "json"))["tables"] == []


@pytest.mark.parametrize("shape", [(16, 16), (5, 16, 16)])
def test_slice_gives_a_2d_image(shape):
    assert plots._slice(np.zeros(shape)).shape == (16, 16)


# ---- what the figures show and say (issue 24: a report people can read) -------------------------


def _train(model, seed, cases, *, dataset="drive", preds=None, kwargs=None, save=0):
    cfg = run_from_dict(
        {
            "dataset": {"name": dataset},
            "model": {"name": model, "kwargs": kwargs or {}},
            "loss": {"name": "dice_ce"},
            "seed": seed,
            "eval": {"save_predictions": save},
        }
    ).to_dict()
    rid = f"{dataset}-{model}-{abs(hash(str(kwargs))) % 1000}-{seed}"
    return {
        "schema": 2,
        "kind": "train",
        "run_id": rid,
        "status": "done",
        "config": cfg,
        "cases": cases,
        "predictions": preds or {},
        "params": 1000,
        "train_seconds": 1.0,
    }


def _texts(fig):
    """Every title, suptitle, figure text, panel text and legend entry with its box in pixels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = list(fig.texts) + ([fig._suptitle] if fig._suptitle is not None else [])
    for ax in fig.axes:
        if ax.get_visible():
            found += [ax.title, ax._left_title, ax._right_title, *ax.texts]
            if ax.get_legend() is not None:
                found += list(ax.get_legend().get_texts())
    unique = {id(t): t for t in found if t.get_visible() and t.get_text().strip()}
    return [(t.get_text(), t.get_window_extent(renderer)) for t in unique.values()]


def _collisions(fig):
    """Pairs of texts that overlap, and texts that stick out of the figure."""
    texts = _texts(fig)
    w, h = fig.canvas.get_width_height()
    out = [(a, b) for i, (a, ba) in enumerate(texts) for b, bb in texts[i + 1 :] if ba.overlaps(bb)]
    out += [
        (a, "outside the figure") for a, b in texts if b.x0 < -1 or b.y0 < -1 or b.x1 > w + 1 or b.y1 > h + 1
    ]
    return out


@pytest.fixture
def captured(monkeypatch):
    """The figures ``plots`` draws, kept open (path -> figure) instead of written."""
    figs = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.__setitem__(Path(path).name, fig))
    yield figs
    for fig in figs.values():
        plt.close(fig)


def _volume_results(results: Path) -> list[dict]:
    """A 3D table (MSD-like): long row names (the models differ in their arguments), two-line panel
    titles, a case that only some rows saved."""
    rng = np.random.default_rng(3)
    recs = []
    for i, ch in enumerate([[8, 16], [16, 32], [32, 64], [8, 8]]):
        label = np.zeros((6, 16, 16), np.uint8)
        label[2:4, 4:12, 6:9] = 1
        preds = {}
        if i < 3:
            arrays = prediction_arrays(label, pred=label, image=rng.random((1, 6, 16, 16)))
            rel = f"predictions/vol-{i}/c0.npz"
            write_prediction(results / rel, arrays)
            preds["c0"] = rel
        cases = [{"case_id": f"c{k}", "dice": 0.7 + 0.01 * k + 0.02 * i, "betti0_err": 1.0} for k in range(4)]
        recs.append(_train("unet", 0, cases, kwargs={"channels": ch}, preds=preds, save=1 if i < 3 else 0))
    return recs


def test_no_title_of_any_figure_overlaps_another_or_leaves_the_figure(tmp_path, captured):
    recs = make_results(tmp_path) + _volume_results(tmp_path)
    analyses = lb.analyse_records(recs, n_resamples=100, **all_pairs(lb.analyse_records))
    plots.render_plots(analyses, tmp_path)
    assert {"cases.png", "blob.png", "significance.png", "reliability.png", "example_c0.png"} <= set(captured)
    bad = {name: _collisions(fig) for name, fig in captured.items()}
    assert all(not v for v in bad.values()), bad


def test_the_overlap_check_sees_a_suptitle_on_a_panel_title():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title("row one / dice_ce\nβ0 err 1")
    fig.suptitle("a table, case c0", y=0.88)  # what the MSD panel did: on top of the panel titles
    try:
        assert _collisions(fig)
    finally:
        plt.close(fig)


def test_a_case_saved_by_some_rows_shows_those_and_says_which_rows_are_missing(tmp_path, captured):
    recs = _volume_results(tmp_path)
    (a,) = lb.analyse_records(recs, n_resamples=100, **all_pairs(lb.analyse_records))
    (done,) = plots.render_plots([a], tmp_path)
    fig = captured["example_c0.png"]
    panel_texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert not any("not saved" in t for t in panel_texts)  # no empty panel
    assert (
        len([ax for ax in fig.axes if ax.get_images()]) == 2 + 3
    )  # image, label and the 3 rows that saved it
    note = "not shown: 1 row without a saved prediction of this case (1 ran with eval.save_predictions 0)"
    assert note in " ".join(t.get_text() for t in fig.texts)
    assert done["skipped"]["example c0"] == note


def test_every_row_is_drawn_and_the_title_says_so(tmp_path, captured):
    recs = []
    for i in range(26):  # more than the old cut at 20
        cases = [{"case_id": f"c{k}", "dice": 0.5 + 0.01 * i + 0.002 * k, "cldice": 0.5} for k in range(6)]
        recs.append(_train("unet", 0, cases, kwargs={"channels": [8, 8 + i]}))
    (a,) = lb.analyse_records(recs, n_resamples=50, **all_pairs(lb.analyse_records))
    plots.render_plots([a], tmp_path)
    for name in ("cases.png", "blob.png", "significance.png"):
        fig = captured[name]
        drawn = [ax for ax in fig.axes if ax.get_visible()]
        ticks = drawn[0].get_yticks() if name == "significance.png" else drawn[0].get_xticks()
        assert len(ticks) == 26, name
        assert "all 26 ranked rows" in fig._suptitle.get_text(), name


def _grey_table(n_rows=10, n_cases=8, gap=0.0):
    rng = np.random.default_rng(5)
    base = rng.uniform(0.5, 0.8, n_cases)
    recs = []
    for i in range(n_rows):
        vals = base + gap * i + rng.normal(0, 0.001, n_cases)
        recs.append(
            _train("unet", 0, [{"case_id": f"c{k}", "dice": v} for k, v in enumerate(vals)], kwargs={"c": i})
        )
    (a,) = lb.analyse_records(recs, n_resamples=50, metrics=["dice"], **all_pairs(lb.analyse_records))
    return a


def test_an_all_grey_significance_map_says_why_in_words(tmp_path, captured):
    a = _grey_table()  # 8 cases, 45 pairs: 45 · 2/2^8 = 0.35 > α, no pair can be significant
    why = significance_note(a, "dice")
    assert why.startswith("no pair can be significant: with 8 paired cases") and "45 pairs" in why
    skipped = plots._draw(a, tmp_path, tmp_path / "significance.png")
    fig = captured["significance.png"]
    assert any(t.get_text().startswith("All grey: no pair can be") for ax in fig.axes for t in ax.texts)
    assert skipped == {"significance (dice)": why}
    # enough cases to test, but no difference: said too, in other words
    flat = _grey_table(n_rows=3, n_cases=20)
    assert significance_note(flat, "dice").startswith("no pair of rows differs significantly")
    # a map with a significant pair needs no excuse
    assert significance_note(_grey_table(n_rows=3, n_cases=20, gap=0.1), "dice") is None


def test_without_all_pairs_tests_the_significance_map_is_not_drawn_and_both_outputs_say_so(tmp_path):
    (a,) = lb.analyse_records(make_results(tmp_path), n_resamples=100)
    a.pairs = {}
    a.all_pairs = False  # Analysis.all_pairs: the all-pairs tests were not asked for
    (done,) = plots.render_plots([a], tmp_path)
    assert "significance.png" not in [p.name for p in done["files"]]
    md = lb.render_analyses([a])
    page = html_report.render_html([a], plots=True)
    assert "all-pairs tests not computed (`segbench leaderboard --all-pairs`)" in md
    assert "all-pairs tests not computed (<code>segbench leaderboard --all-pairs</code>)" in page
    assert "significance.png" not in page


def test_the_runner_saves_every_image_channel_and_the_panel_draws_them_in_colour(tmp_path, captured):
    import torch

    from bench.run.callbacks import CaseMetricsCallback

    h, w = 24, 20
    rgb = np.zeros((3, h, w), np.float32)
    rgb[0, : h // 2], rgb[1, :, : w // 2], rgb[2, h // 2 :] = (
        1.0,
        1.0,
        1.0,
    )  # red top, green left, blue bottom
    rgb += np.random.default_rng(0).normal(0, 0.01, rgb.shape).astype(np.float32)
    label = np.zeros((h, w), np.int64)
    label[5:15, 8:11] = 1
    prob = np.stack([1.0 - label, label]).astype(np.float32)
    cb = CaseMetricsCallback(save_dir=tmp_path / "predictions" / "rgb-run", save_ids={"c0"})
    cb.on_test_epoch_start(None, None)
    outputs = {
        "fov": None,
        "prob": torch.from_numpy(prob),
        "label": torch.from_numpy(label),
        "spacing": (1.0, 1.0),
        "case_id": "c0",
    }
    cb.on_test_batch_end(None, None, outputs, {"image": torch.from_numpy(rgb[None])}, 0)
    saved = read_prediction(tmp_path / cb.saved["c0"])
    assert saved["image"].shape == (3, h, w)  # every channel, not the first one
    rec = _train("unet", 0, [{"case_id": "c0", "dice": 1.0}], preds=dict(cb.saved), save=1)
    (a,) = lb.analyse_records([rec], n_resamples=20, **all_pairs(lb.analyse_records))
    plots.render_plots([a], tmp_path)
    fig = captured["example_c0.png"]
    shown = fig.axes[0].get_images()[0].get_array()
    assert shown.shape == (h, w, 3) and fig.axes[0].get_title() == "image (RGB)"
    colour = {
        k: tuple(np.round(shown[y, x]).astype(int))
        for k, (y, x) in {"tl": (1, 1), "tr": (1, w - 2), "br": (h - 2, w - 2)}.items()
    }
    assert colour == {"tl": (1, 1, 0), "tr": (1, 0, 0), "br": (0, 0, 1)}  # yellow, red, blue


def test_an_old_one_channel_file_is_stretched_so_that_faint_vessels_show():
    # a fundus red channel as older files hold it: the disc nearly saturated, vessels a few grey
    # levels below, the outside of the field of view far below
    h = w = 120
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - 60) ** 2 + (xx - 60) ** 2 < 55**2
    image = np.where(fov, 0.3528, -9.0).astype(np.float32)
    rim = fov & ((yy - 60) ** 2 + (xx - 60) ** 2 > 50**2)  # a dark, vignetted edge inside the field of view
    image[rim] = np.linspace(-8.0, 0.0, int(rim.sum()))
    vessel = fov & (np.abs(xx - 60) < 3)
    image[vessel] = 0.279
    image[fov & (np.abs(yy - 40) < 2)] = 0.316
    label = vessel.astype(np.uint8)
    grey, title = plots.display_image(image.astype(np.float16), label, fov)
    assert grey.ndim == 2 and "percentile-stretched" in title and "one channel" in title
    assert grey.shape == (h, w)  # small enough to be shown as it is
    disc = fov & ~rim
    assert grey[disc & ~vessel].mean() - grey[disc & vessel].mean() > 0.3  # vessels clearly darker
    naive = (image - image.min()) / (image.max() - image.min())  # what the panel showed before
    assert naive[disc & ~vessel].mean() - naive[disc & vessel].mean() < 0.01


def test_figures_of_tables_that_are_gone_are_removed_but_not_foreign_files(tmp_path):
    from bench.leaderboard.plots import remove_stale_plots

    plots = tmp_path / "plots"
    for name, files in {
        "kept": ["a.png"],
        "old-title": ["cases.png", "blob.png"],
        "mine": ["notes.txt"],
    }.items():
        (plots / name).mkdir(parents=True)
        for f in files:
            (plots / name / f).write_bytes(b"x")
    assert remove_stale_plots(tmp_path, {"kept"}) == [plots / "old-title"]
    assert sorted(p.name for p in plots.iterdir()) == ["kept", "mine"]


def test_a_long_table_label_is_wrapped_inside_the_learning_curve_figure(tmp_path, captured):
    """The bug this fixed: "chase_db1_long + chase_db1_long_claims on chase_db1: learning curves
    (...)" ran past both edges of the figure."""
    recs = make_results(tmp_path)
    for i, rec in enumerate(recs):
        rec["config"]["sweep"] = ["a_rather_long_sweep_name", "another_rather_long_sweep_name"][i % 2]
        rec["val_trace"] = [[s, 0.5 + 0.01 * k, 0.3] for k, s in enumerate(range(100, 1100, 100))]
    (a,) = lb.analyse_records(recs, n_resamples=50)
    assert len(a.table.label) > 60  # + ": learning curves (...)": about 125 characters
    plots.render_plots([a], tmp_path)
    fig = captured["curves.png"]
    assert not _collisions(fig)
    assert "\n" in fig._suptitle.get_text()  # wrapped, not shrunk


def test_rows_whose_cut_names_coincide_get_their_table_rank_in_the_figures(tmp_path, captured):
    """The bug this fixed: the MSD table's learning curves named two rows
    ``nnunet_plain (tta none, preset …`` (small and hippocampus presets), so the legend could not
    tell them apart. Names that coincide once cut carry the row's ``#`` from the table."""
    recs = make_results(tmp_path)
    option = "a_rather_long_option_name"
    for rec in recs:
        k = ["unet", "swin_unetr", "attention_unet"].index(rec["config"]["model"]["name"])
        rec["config"]["model"] = {"name": "unet", "kwargs": {option: k}}
        rec["val_trace"] = [[s, 0.5 + 0.01 * k, 0.3] for s in range(100, 1100, 100)]
    (a,) = lb.analyse_records(recs, n_resamples=50)
    full = sorted(f"{r.label} / {r.loss}" for r in a.ranked)
    assert len({t[: plots.LABEL_WIDTH - 1] for t in full}) == 1  # cut, they coincide
    plots.render_plots([a], tmp_path)
    legend = [t.get_text() for t in captured["curves.png"].axes[0].get_legend().get_texts()]
    # ranked by Dice: the option-2 rows (swin_unetr's values, +0.05) first, then 0, then 1
    assert [t.split(" ", 1)[0] for t in legend] == ["#1", "#2", "#3"]
    assert all(t.split(" ", 1)[1].startswith(f"unet ({option}") for t in legend)
    ticks = [t.get_text() for t in captured["cases.png"].axes[0].get_xticklabels()]
    assert len(set(ticks)) == 3 and all(t.startswith("#") for t in ticks)
