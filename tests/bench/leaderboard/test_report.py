"""What the Markdown, the HTML report and the exports say in words: ``#`` is the primary metric's
rank and the sentence beside the table says so; the seed share is explained; the results folder is
named as given; the report has one table per metric group, and its long lists are collapsed."""

import csv
import html
import inspect
import io
import re

import numpy as np
import pytest

import bench.leaderboard as lb
from bench.config import run_from_dict
from bench.leaderboard import html as report
from bench.leaderboard.format import SEED_SHARE_TEXT
from bench.leaderboard.markdown import render_markdown
from tests.bench.leaderboard.test_html import SIXTEEN as WIDE_METRICS


def _rec(model, values, *, seed=0, kwargs=None):
    cfg = run_from_dict(
        {
            "dataset": {"name": "drive"},
            "model": {"name": model, "kwargs": kwargs or {}},
            "loss": {"name": "dice_ce"},
            "seed": seed,
        }
    ).to_dict()
    n = len(next(iter(values.values())))
    cases = [{"case_id": f"c{i:02d}", **{k: float(v[i]) for k, v in values.items()}} for i in range(n)]
    return {
        "schema": 3,
        "kind": "train",
        "run_id": f"{model}-{kwargs}-{seed}",
        "status": "done",
        "config": cfg,
        "cases": cases,
        "params": 1000,
        "train_seconds": 1.0,
    }


BASE = np.linspace(0.6, 0.8, 10)


def _ranked_records():
    """Dice ranks a > b = d > c; the combined rank over dice and Betti-0 error puts b first."""
    return [
        _rec("unet", {"dice": BASE + 0.2, "betti0_err": BASE * 0 + 40}),  # a: best Dice, worst Betti
        _rec("swin_unetr", {"dice": BASE + 0.1, "betti0_err": BASE * 0 + 1}),  # b
        _rec("attention_unet", {"dice": BASE, "betti0_err": BASE * 0 + 2}),  # c
        _rec("segresnet", {"dice": BASE + 0.1, "betti0_err": BASE * 0 + 3}),  # d: ties with b on Dice
    ]


def _md_ranks(text):
    rows = [ln.split(" | ") for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| #")]
    return {cells[1]: cells[0].lstrip("| ") for cells in rows if len(cells) > 5 and cells[2] == "dice_ce"}


def test_hash_column_is_the_primary_metrics_rank_and_the_table_says_so():
    recs = _ranked_records()
    (a,) = lb.analyse_records(recs, n_resamples=50, metrics=["dice", "betti0_err"])
    combined = {r.model: a.combined[r.key] for r in a.ranked}
    assert combined["swin_unetr"] < combined["unet"]  # the combined rank disagrees with Dice
    md = lb.render_analyses([a])
    assert _md_ranks(md) == {"unet": "1", "swin_unetr": "2", "segresnet": "2", "attention_unet": "4"}
    sentence = (
        "`#` ranks rows by mean dice (higher is better); ties share the better rank. The combined rank "
        "over dice, betti0_err (the mean of their ranks) is `combined_rank` in the JSON/CSV export."
    )
    assert f"\n{sentence}\n" in md  # beside the table, and not a Markdown heading
    page = report.render_html([a], plots=False)
    assert (
        sentence.replace("`#`", "<code>#</code>").replace("`combined_rank`", "<code>combined_rank</code>")
        in page
    )
    first = page.split('<table class="sortable summary">')[1].split("</table>")[0]
    cells = re.findall(
        r'<tr class="ranked"><td data-sort="[^"]*">(\d+)</td><td class="name">(\w+)</td>', first
    )
    assert {name: rank for rank, name in cells} == _md_ranks(md)
    rows = list(csv.DictReader(io.StringIO(lb.render_analyses([a], "csv"))))
    assert {r["row"]: float(r["combined_rank"]) for r in rows if r["metric"] == "dice"} == combined
    latex = lb.render_analyses([a], "latex")
    assert re.search(r"^1 & unet & ", latex, re.M) and "bootstrap CI" not in latex and "approx" not in latex


def test_the_seed_share_column_is_explained_in_words():
    recs = [_rec("unet", {"dice": BASE + 0.01 * s}, seed=s) for s in range(3)]
    recs += [_rec("swin_unetr", {"dice": BASE + 0.1 + 0.02 * s}, seed=s) for s in range(3)]
    (a,) = lb.analyse_records(recs, n_resamples=50)
    md = lb.render_analyses([a])
    assert "| seed share of dice variance |" in md and "seed var" not in md
    assert SEED_SHARE_TEXT.format(m="dice") in md
    assert "0% means the runs differ no more than their case-to-case spread" in md
    page = report.render_html([a], plots=False)
    assert "seed share of dice variance" in page and html.escape(SEED_SHARE_TEXT.format(m="dice")) in page


@pytest.mark.parametrize("name", ["results", "runs/mine", "/tmp/elsewhere/"])
def test_the_header_names_the_results_folder_it_was_given(tmp_path, name):
    (a,) = lb.analyse_records([_rec("unet", {"dice": BASE})], n_resamples=20)
    md = render_markdown([a], results_name=name)
    assert f"from the run records under `{name.rstrip('/')}/`;" in md
    path = report.write_report([a], tmp_path, plots=False, results_name=name)
    assert f"under <code>{name.rstrip('/')}/</code>" in path.read_text()


def test_without_a_results_name_no_folder_is_claimed(tmp_path):
    (a,) = lb.analyse_records([_rec("unet", {"dice": BASE})], n_resamples=20)
    assert "`results/`" not in render_markdown([a]) and "results/" not in report.render_html([a], plots=False)


SIXTEEN = WIDE_METRICS  # the report test's sixteen metrics, every group represented


def many_metric_records(n_rows, seeds=(0, 1)):
    """``n_rows`` rows × ``seeds`` of 12 cases with every metric of :data:`SIXTEEN`; neighbouring rows
    lie within each other's training noise."""
    rng = np.random.default_rng(0)
    recs = []
    for i in range(n_rows):
        for s in seeds:
            shift = 0.002 * i + rng.normal(0, 0.01)
            vals = {m: np.clip(BASE + shift + rng.normal(0, 0.01, BASE.size), 0, 1) for m in SIXTEEN}
            for m in ("betti0_err", "betti1_err", "betti2_err", "hd95", "hd95_1"):
                vals[m] = vals[m] * 20
            recs.append(_rec("unet", vals, seed=s, kwargs={"channels": [8, 16 + i]}))
    return recs


def test_one_table_per_metric_group_each_with_rank_row_and_primary_metric():
    (a,) = lb.analyse_records(many_metric_records(4), n_resamples=30)
    assert report.metric_group("dice") == "overlap" and report.metric_group("iou_1") == "overlap"
    assert (
        report.metric_group("cldice") == "topology" and report.metric_group("betti1_err_patch") == "topology"
    )
    assert report.metric_group("hd95_1") == "distance" and report.metric_group("nsd") == "distance"
    assert report.metric_group("brier") == "calibration" and report.metric_group("not_a_metric") == "other"
    page = report.render_html([a], plots=False)
    heads = re.findall(r'<table class="sortable group" data-group="([^"]+)"><thead><tr>(.*?)</tr>', page)
    groups = {g: re.findall(r"<th[^>]*>([^<]*)</th>", h) for g, h in heads}
    assert list(groups) == ["overlap", "topology", "distance", "calibration"]
    for cols in groups.values():
        assert cols[:4] == ["#", "model", "loss", "dice ↑"]  # rank, row and primary metric in each
    shown = [c.split(" ")[0] for cols in groups.values() for c in cols[4:]]
    assert sorted(shown) == sorted(set(SIXTEEN) - {"dice"})  # every other metric once
    assert max(len(cols) - 4 for cols in groups.values()) <= report.GROUP_COLUMNS


def test_a_large_group_is_split_into_tables_that_fit():
    assert report.metric_tables([f"betti0_err_{c}" for c in range(9)], "dice") == [
        ("topology, 1 of 2", [f"betti0_err_{c}" for c in range(6)]),
        ("topology, 2 of 2", [f"betti0_err_{c}" for c in range(6, 9)]),
    ]


def test_the_pairs_within_training_noise_are_collapsed_behind_their_count():
    wanted = {"all_pairs": True} if "all_pairs" in inspect.signature(lb.analyse_records).parameters else {}
    (a,) = lb.analyse_records(many_metric_records(6), n_resamples=30, **wanted)
    noise = [p for m in a.rank_metrics for p in a.pairs.get(m, []) if p.within_noise]
    assert len(noise) > 5
    page = report.render_html([a], plots=False)
    block = page.split('<details class="pairs"><summary>')[1].split("</details>")[0]
    assert block.startswith(f"{len(noise)} pairs within training noise (")
    assert block.count("<li>") == len(noise)
    assert "Within training noise: " not in page  # no paragraph of every pair any more
