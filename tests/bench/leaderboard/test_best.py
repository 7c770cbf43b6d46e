"""The leaderboard's comparisons with the best, on hand-made records: the Holm family of m − 1
comparisons, the "n too small to test" mark, the paired difference, the equivalence margin, collapsed
and baseline rows, case groups, thread counts and provenance (docs/leaderboard.md)."""

import math

import numpy as np
import pytest

import bench.leaderboard as lb
from bench.config import run_from_dict
from bench.leaderboard import analysis
from bench.leaderboard.degenerate import ConstantReferences
from bench.leaderboard.intervals import group_units, mean_interval
from bench.leaderboard.markdown import render_markdown
from bench.leaderboard.rows import group_records
from bench.leaderboard.stats import holm
from bench.records.record import Record
from bench.records.supersede import Superseded
from datamodules.chase_db1 import ChaseDb1DataModule
from datamodules.isbi2012_em import Isbi2012EmDataModule

CHASE = [f"Image_{k}{eye}" for k in (11, 12, 13, 14) for eye in "LR"]
CASES12 = [f"c{i:02d}" for i in range(12)]
BASE = np.array([0.62, 0.71, 0.55, 0.80, 0.66, 0.74, 0.59, 0.69, 0.77, 0.64, 0.72, 0.58])


def record(model, values, *, seed=0, cases=CASES12, dataset="drive", extra=None, **top):
    """A done train record; ``values``: one Dice per case; ``extra``: more metrics per case."""
    cfg = run_from_dict(
        {
            "dataset": {"name": dataset, "kwargs": {}},
            "model": {"name": model, "kwargs": {}},
            "loss": {"name": "dice_ce"},
            "seed": seed,
            "trainer": {"max_steps": 100},
        }
    ).to_dict()
    rows = [{"case_id": c, "dice": float(v)} for c, v in zip(cases, values)]
    for k, v in (extra or {}).items():
        for row, x in zip(rows, v):
            row[k] = float(x)
    rec = {
        "schema": 2,
        "kind": "train",
        "run_id": f"{dataset}-{model}-s{seed}",
        "status": "done",
        "config": cfg,
        "cases": rows,
        "params": 1000,
        "train_seconds": 10.0,
        "steps": 100,
        "git": {"commit": "abcdef0123456789", "dirty": False},
        "device": {"accelerator": "cpu", "cpu_count": 2},
    }
    rec.update(top)
    return rec


def analyse(recs, **kw):
    (a,) = lb.analyse_records(recs, n_resamples=200, **kw)
    return a


def keys(a):
    return {r.model: r.key for r in a.ranked}


def table_lines(a):
    text = lb.render_analyses([a])
    return {ln.split(" | ")[1]: ln for ln in text.splitlines() if ln.startswith("| ") and " | " in ln}, text


MODELS = ["unet", "swin_unetr", "attention_unet", "resenc_unet", "segresnet", "umamba_bot"]


def test_eight_cases_and_many_rows_cannot_reach_alpha_so_no_mark_claims_anything():
    # 6 rows on 8 cases; every other row loses to the best on all 8: the exact test's smallest
    # two-sided p is 2/2^8, Holm over 5 comparisons makes it 5 * 2/256 = 0.039 < 0.05 -> testable;
    # with 11 rows (10 comparisons) 0.078 > 0.05 -> "·" (n too small to test), never ≈
    cases = CASES12[:8]
    recs = [record(m, BASE[:8] - 0.05 * i, cases=cases) for i, m in enumerate(MODELS)]
    a = analyse(recs)
    comps = a.vs_best["dice"].values()
    assert len(comps) == 5 and all(c.min_p == pytest.approx(5 * 2 / 256) for c in comps)
    assert all(c.testable and c.significant and c.mark == "*" for c in comps)
    more = MODELS + ["unetr", "hybridgnet_dense", "xlstm_unet", "stu_net", "swin_unetr_v2"]
    recs = [record(m, BASE[:8] - 0.05 * i, cases=cases) for i, m in enumerate(more)]
    a = analyse(recs)
    comps = list(a.vs_best["dice"].values())
    assert len(comps) == 10 and all(c.min_p == pytest.approx(10 * 2 / 256) for c in comps)
    assert all(not c.testable and c.mark == "·" for c in comps)
    rows, text = table_lines(a)
    assert "≈" not in text.split("## default on drive")[1]
    assert all(" ·" in ln for m, ln in rows.items() if m in more[1:])
    assert "10·2/2^8 = 0.0781 (· n too small to test)" in text


def test_holm_runs_over_the_m_minus_1_comparisons_with_the_best():
    rng = np.random.default_rng(3)
    recs = [record(m, BASE + 0.01 * i + rng.normal(0, 0.01, 12)) for i, m in enumerate(MODELS[:4])]
    a = analyse(recs)
    comps = a.vs_best["dice"]
    assert len(comps) == 3 and a.best["dice"] not in comps
    ps = [c.p for c in comps.values()]
    np.testing.assert_allclose([c.p_holm for c in comps.values()], holm(ps))
    assert all(c.min_p == pytest.approx(3 * 2 / 2**12) for c in comps.values())


def test_the_paired_difference_pairs_runs_by_seed():
    # the seed effect is shared by both rows (same seed, same shift): pairing removes it
    recs = []
    for s in range(3):
        recs.append(record("unet", BASE + 0.1 * s, seed=s))
        recs.append(record("swin_unetr", BASE + 0.1 * s - 0.02 + 0.001 * np.arange(12), seed=s))
    a = analyse(recs)
    c = a.vs_best["dice"][keys(a)["swin_unetr"]]
    d = np.array([-0.02 + 0.001 * np.arange(12)] * 3)
    want = mean_interval(d)
    assert c.diff.design == "crossed" and (c.diff.lo, c.diff.hi) == pytest.approx((want.lo, want.hi))
    assert c.diff.hi < 0  # unpaired, the seed spread 0.1 would swallow the difference
    rows, _ = table_lines(a)
    assert "-0.015 [" in rows["swin_unetr"]


def test_equivalence_is_claimed_only_with_a_margin_and_inside_it():
    recs = [record("unet", BASE), record("swin_unetr", BASE - 0.002 + 0.0001 * np.arange(12))]
    recs += [record("attention_unet", BASE - 0.1)]
    a = analyse(recs)
    assert all(c.equivalent is None and c.mark != "≡" for c in a.vs_best["dice"].values())
    assert "No equivalence claim" in lb.render_analyses([a])
    a = analyse(recs, equivalence_margin=0.01)
    k = keys(a)
    assert a.vs_best["dice"][k["swin_unetr"]].mark == "≡"
    assert a.vs_best["dice"][k["attention_unet"]].equivalent is False
    assert "within ±0.01 (TOST)" in lb.render_analyses([a])


def test_the_cli_passes_the_margin_down(tmp_path):
    from bench.cli.app import main
    from bench.records.store import write_json_atomic

    res = tmp_path / "results"
    res.mkdir()
    recs = [record("unet", BASE), record("swin_unetr", BASE - 0.002 + 0.0001 * np.arange(12))]
    for r in recs:
        write_json_atomic(res / f"{r['run_id']}.json", r)
    out = tmp_path / "lb.md"
    args = ["leaderboard", "--results", str(res), "--output", str(out), "--no-plots"]
    assert main([*args, "--equivalence-margin", "0.01"]) == 0
    table = out.read_text().split("## default on drive")[1]
    assert "≡" in table and "within ±0.01 (TOST)" in table
    assert main(args) == 0
    assert "≡" not in out.read_text().split("## default on drive")[1]


def test_a_collapsed_row_is_never_bold_best_or_a_reference_and_says_so():
    betti = {"betti0_err": np.full(12, 0.5)}
    recs = [
        record("unet", BASE, extra=betti),
        record("swin_unetr", BASE - 0.05, extra={"betti0_err": np.full(12, 1.0)}),
        # best Dice and a perfect Betti-0 error, but every prediction was all foreground
        record(
            "attention_unet",
            BASE + 0.2,
            extra={"betti0_err": np.zeros(12)},
            degenerate={"kind": "all-foreground", "cases": CASES12},
        ),
    ]
    a = analyse(recs, metrics=["dice", "betti0_err"])
    k = keys(a)
    bad = k["attention_unet"]
    assert bad in a.collapsed
    assert a.best == {"dice": k["unet"], "betti0_err": k["unet"]}
    assert not a.is_best("dice", bad) and not a.is_best("betti0_err", bad)
    assert all(c.best == k["unet"] for m in a.vs_best for c in a.vs_best[m].values())
    assert a.agg_rank["betti0_err"][bad] == 3  # topology: ranks last, it is a constant mask's value
    assert a.agg_rank["dice"][bad] == 1  # overlap: ranked on its value, shown beside the topology
    assert "†" in a.mark("betti0_err", bad) and "†" not in a.mark("dice", bad)
    rows, _ = table_lines(a)
    assert "**" not in rows["attention_unet"] and "†" in rows["attention_unet"]
    assert "collapsed: all-foreground on 12/12 cases" in rows["attention_unet"]


def test_a_partly_collapsed_row_says_how_many_runs():
    recs = [record("unet", BASE + 0.01 * s, seed=s) for s in range(3)]
    recs[1]["degenerate"] = {"kind": "all-background", "cases": CASES12[:7]}
    recs.append(record("swin_unetr", BASE - 0.1))
    a = analyse(recs)
    k = keys(a)["unet"]
    assert k not in a.collapsed and a.is_best("dice", k)  # still a candidate for best
    assert any(n.startswith("1 of 3 runs collapsed (all-background: `drive-unet-s1`") for n in a.notes[k])


def test_a_baseline_row_is_never_best():
    # a constant baseline also matches itself as a constant reference (collapsed); without references
    # only its `baseline` field keeps it from being best
    recs = [record("unet", BASE), record("swin_unetr", BASE + 0.3, baseline="constant")]
    (table,) = group_records([Record.from_dict(r) for r in recs])
    a = analysis.analyse(table, n_resamples=200, references=ConstantReferences())
    k = keys(a)
    assert k["swin_unetr"] not in a.collapsed and k["swin_unetr"] in a.baseline
    assert a.best["dice"] == k["unet"] and not a.is_best("dice", k["swin_unetr"])
    assert a.vs_best["dice"][k["swin_unetr"]].best == k["unet"]


def test_chase_cases_pair_by_child_and_isbi_has_no_groups():
    groups = ChaseDb1DataModule.case_groups(CHASE)
    assert groups["Image_11L"] == groups["Image_11R"] == "child 11" and len(set(groups.values())) == 4
    assert Isbi2012EmDataModule.case_groups(["slice_00", "slice_01"]) == {}
    vals = np.array([0.7, 0.6, 0.8, 0.5, 0.65, 0.75, 0.7, 0.62])
    recs = [record(m, vals - 0.03 * i, cases=CHASE, dataset="chase_db1") for i, m in enumerate(MODELS[:3])]
    a = analyse(recs)
    assert a.groups == groups and a.units_text().startswith("4 case groups (child 11, child 12, …)")
    c = a.vs_best["dice"][keys(a)["swin_unetr"]]
    assert c.n == 4 and not c.testable and c.mark == "·"  # 2 * 2/2^4 > 0.05
    s = a.row_stats[keys(a)["unet"]]["dice"]
    units, _ = group_units(np.array([vals]), CHASE, groups)
    assert s.ci.n_units == 4 and (s.ci.lo, s.ci.hi) == pytest.approx(
        (mean_interval(units).lo, mean_interval(units).hi)
    )
    text = lb.render_analyses([a])
    assert "over 4 case groups" in text and "sd seed / group dice" in text


def test_the_cell_prints_the_crossed_interval_and_says_when_training_noise_is_ignored():
    recs = [record("unet", BASE + 0.02 * s, seed=s) for s in range(3)]
    recs += [record("swin_unetr", BASE - 0.05)]
    recs += [record("attention_unet", BASE - 0.1 + 0.01 * s, seed=s) for s in range(2)]
    a = analyse(recs)
    k = keys(a)
    s = a.row_stats[k["unet"]]["dice"]
    want = mean_interval(np.array([BASE + 0.02 * s for s in range(3)]))
    assert s.ci.design == "crossed" and (s.ci.lo, s.ci.hi) == pytest.approx((want.lo, want.hi))
    assert "1 run: interval ignores training noise" in a.notes[k["swin_unetr"]]
    assert "2 runs: interval barely covers training noise" in a.notes[k["attention_unet"]]
    assert not any("training noise" in n for n in a.notes[k["unet"]])
    rows, _ = table_lines(a)
    assert f"{s.ci.seed_sd:.3f} / {s.ci.unit_sd:.3f}" in rows["unet"]


def test_time_column_says_thread_counts_when_rows_differ_and_provenance_names_dirty_runs():
    recs = [
        record("unet", BASE, git={"commit": "abcdef0123456789", "dirty": True}),
        record("swin_unetr", BASE - 0.1, device={"accelerator": "cpu", "cpu_count": 1}),
    ]
    a = analyse(recs)
    rows, text = table_lines(a)
    assert "10 (2 thr)" in rows["unet"] and "10 (1 thr)" in rows["swin_unetr"]
    assert "rows ran with 1 and 2 torch threads" in text
    assert "(dirty: `drive-unet-s0`)" in text
    same = analyse([record("unet", BASE), record("swin_unetr", BASE - 0.1)])
    text = lb.render_analyses([same])
    assert "thr)" not in text and "train s: every trained row ran on the CPU with 2 torch threads." in text
    # a baseline's evaluation ran with 1 thread: no training time differs, so no "do not compare"
    one = {"device": {"accelerator": "cpu", "cpu_count": 1}}
    base = analyse([record("unet", BASE), record("swin_unetr", BASE - 0.3, baseline="constant", **one)])
    text = lb.render_analyses([base])
    assert "do not compare" not in text and "every trained row ran on the CPU with 2 torch threads." in text


def test_time_column_names_the_gpu_when_rows_ran_on_a_gpu_and_a_cpu():
    gpu = {"accelerator": "gpu", "gpu": "NVIDIA H200", "torch_threads": 1}
    recs = [record("unet", BASE, device=gpu), record("swin_unetr", BASE - 0.1)]
    a = analyse(recs)
    rows, text = table_lines(a)
    assert "10 (NVIDIA H200)" in rows["unet"] and "10 (2 thr)" in rows["swin_unetr"]
    assert "rows ran on NVIDIA H200 and on the CPU with 2 torch threads (per cell)" in text
    # both on the one GPU: the times compare, no cell note; the legend names the GPU once
    same = analyse([record("unet", BASE, device=gpu), record("swin_unetr", BASE - 0.1, device=gpu)])
    text = lb.render_analyses([same])
    assert "(NVIDIA H200)" not in text and "rows ran on" not in text
    assert "train s: every trained row ran on NVIDIA H200." in text and "torch thread" not in text


def test_time_cell_says_how_many_runs_trained_side_by_side():
    """A row whose runs trained among other runner processes (``segbench run --side-by-side``)
    says how many shared the machine; a row of runs that trained alone, or whose records predate
    the count, shows the bare mean."""
    gpu = {"accelerator": "gpu", "gpu": "NVIDIA H200", "torch_threads": 1}
    recs = [record("unet", BASE, seed=s, device={**gpu, "side_by_side": 5}) for s in range(2)]
    recs += [record("swin_unetr", BASE - 0.1, device={**gpu, "side_by_side": 1})]
    recs += [record("attention_unet", BASE - 0.2, device=gpu)]
    recs += [
        record("resenc_unet", BASE - 0.3, seed=s, device={**gpu, "side_by_side": 2 + s}) for s in range(2)
    ]
    recs += [record("segresnet", BASE - 0.3, seed=0, device={**gpu, "side_by_side": 2})]
    recs += [record("segresnet", BASE - 0.3, seed=1, device=gpu)]
    rows, _ = table_lines(analyse(recs))
    assert "| 10 (5 side by side) |" in rows["unet"]
    assert "| 10 |" in rows["swin_unetr"] and "| 10 |" in rows["attention_unet"]
    assert "| 10 (2–3 side by side) |" in rows["resenc_unet"]
    assert "| 10 (2 and ? side by side) |" in rows["segresnet"]


def test_superseded_records_are_listed_with_their_reason():
    gone = [
        Superseded("drive-unet-s0", ".superseded/x.json", "2026-12-01T10:00:00", "mLSTM fix", "1234567890")
    ]
    text = render_markdown([], superseded=gone)
    assert "## Superseded records" in text and "`drive-unet-s0`" in text and "reason: mLSTM fix" in text
    assert "commit 12345678" in text and "## Superseded" not in render_markdown([])


def test_interval_floor_keeps_a_paired_difference_finite():
    # similar rows: MS_res about as large as MS_unit, Satterthwaite's df would fall below 1
    d = np.array(
        [[-0.031, -0.015, -0.017, -0.020], [-0.026, -0.024, -0.025, -0.032], [-0.095, -0.011, 0.011, -0.013]]
    )
    iv = mean_interval(d)
    assert iv.df >= 2 and iv.hi - iv.lo < 0.2 and not math.isnan(iv.lo)


def test_a_partly_collapsed_row_is_never_best_on_a_topology_metric():
    """1 of 3 runs all background: its few-component empty masks give the row the lowest Betti-0
    error, which is a constant mask's value. The row stays a candidate on Dice but is not bold and
    ranks last on betti0_err; the intact row is the topology best."""
    low = {"betti0_err": np.full(12, 0.2)}
    recs = [record("unet", BASE + 0.01 * s, seed=s, extra=low) for s in range(3)]
    recs[1]["degenerate"] = {"kind": "all-background", "cases": CASES12}
    recs.append(record("swin_unetr", BASE - 0.1, extra={"betti0_err": np.full(12, 3.0)}))
    a = analyse(recs, metrics=["dice", "betti0_err"])
    k = keys(a)
    assert a.is_best("dice", k["unet"]) and not a.is_best("betti0_err", k["unet"])
    assert a.best["betti0_err"] == k["swin_unetr"]
    assert a.agg_rank["betti0_err"][k["unet"]] == 2 and a.agg_rank["betti0_err"][k["swin_unetr"]] == 1
    rows, _ = table_lines(a)
    assert "**0.200" not in rows["unet"] and "†" in rows["unet"]
