"""Leaderboard figures: every PNG is written, readable and non-empty; missing probabilities are said."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bench.leaderboard as lb
from bench.config import run_from_dict
from bench.leaderboard import plots
from bench.records.store import write_json_atomic

CASES = [f"c{i}" for i in range(6)]


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
    (a,) = lb.analyse_records(recs, n_resamples=200)
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
    }


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))}


def test_figures_drawn_by_a_process_pool_are_those_drawn_in_process(tmp_path):
    (a,) = lb.analyse_records(make_results(tmp_path), n_resamples=200)
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
    (a,) = lb.analyse_records(recs, n_resamples=100)
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
    out = lb.write_leaderboard(res, tmp_path / "leaderboard.md")
    text = out.read_text()
    links = [seg.split(")")[0] for seg in text.split("](")[1:]]
    assert len(links) == 6 and all((tmp_path / link).is_file() for link in links)
    assert json.loads(lb.render(json.loads("[]"), "json"))["tables"] == []


@pytest.mark.parametrize("shape", [(16, 16), (5, 16, 16)])
def test_slice_gives_a_2d_image(shape):
    assert plots._slice(np.zeros(shape)).shape == (16, 16)
