"""Subgroups (``segbench leaderboard --by KEY``): per-group means, intervals from the group's cases
only, clusters within a group, per-group ranks, metadata resolved from the records (release names and
``case_metadata.csv``), the one-line error for a key no dataset has, and the command on the committed
records. Expected numbers are computed by hand / with numpy and scipy, never with segbench."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from bench.cli import main
from bench.config import run_from_dict
from bench.leaderboard.subgroups import SubgroupKeyError, render_subgroups, subgroup_tables
from bench.records.store import write_json_atomic

REPO = Path(__file__).resolve().parents[3]

# HRF cases named as the release names them: healthy _h, glaucoma _g, diabetic retinopathy _dr
HRF_CASES = ("01_h", "02_h", "03_h", "01_g", "02_g", "03_g", "01_dr", "02_dr")
# unet wins overall but loses on glaucoma; swin_unetr is flat
UNET = (0.90, 0.92, 0.94, 0.50, 0.52, 0.48, 0.80, 0.70)
SWIN = (0.60, 0.62, 0.64, 0.60, 0.61, 0.62, 0.75, 0.65)


def record(model, values, cases=HRF_CASES, *, seed=0, dataset="hrf", ds_kwargs=None):
    cfg = run_from_dict(
        {
            "dataset": {"name": dataset, "kwargs": ds_kwargs or {}},
            "model": {"name": model, "kwargs": {}},
            "loss": {"name": "dice_ce"},
            "seed": seed,
            "trainer": {"max_steps": 100},
        }
    ).to_dict()
    return {
        "schema": 2,
        "kind": "train",
        "run_id": f"{dataset}-{model}-{seed}",
        "status": "done",
        "config": cfg,
        "cases": [{"case_id": c, "dice": v} for c, v in zip(cases, values, strict=True)],
        "params": 1000,
        "steps": 100,
        "git": {"commit": "abcdef0123456789", "dirty": False},
        "device": {"accelerator": "cpu"},
    }


def human(values, cases=HRF_CASES, dataset="hrf"):
    return {
        "schema": 2,
        "kind": "evaluation",
        "run_id": "eval-second-rater",
        "status": "done",
        "method": "second rater",
        "baseline": "human",
        "config": {
            "dataset": {"name": dataset, "kwargs": {}},
            "method": "second rater",
            "eval": {"betti_patch": None, "nsd_tolerance": 1.0},
            "split": "test",
            "source": {},
        },
        "cases": [{"case_id": c, "dice": v} for c, v in zip(cases, values, strict=True)],
    }


def t_interval(values):
    """Student's t 95 % interval of the mean, by hand (scipy's t quantile)."""
    v = np.asarray(values, dtype=float)
    half = sps.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return v.mean() - half, v.mean() + half


def table_lines(text, heading):
    """The lines of the Markdown table under ``heading`` (header and separator included)."""
    return text.split(f"{heading}\n")[1].strip("\n").split("\n\n")[0].splitlines()


def cells_by_model(group, st):
    return {row.model: group.cells[row.key] for row in st.rows}


def test_per_group_means_counts_and_intervals_by_hand():
    (st,), rest = subgroup_tables([record("unet", UNET), record("swin_unetr", SWIN)], "condition")
    assert rest == [] and st.metric == "dice" and st.without == []
    groups = {g.value: g for g in st.groups}
    assert sorted(groups) == ["diabetic_retinopathy", "glaucoma", "healthy"]
    assert {v: len(g.cases) for v, g in groups.items()} == {
        "diabetic_retinopathy": 2,
        "glaucoma": 3,
        "healthy": 3,
    }
    g = cells_by_model(groups["glaucoma"], st)
    assert g["unet"].mean == pytest.approx(0.50) and g["swin_unetr"].mean == pytest.approx(0.61)
    assert g["unet"].n_cases == 3 and g["unet"].design == "units"
    # the interval is the t interval of the glaucoma cases alone, and it holds the mean
    lo, hi = t_interval([0.50, 0.52, 0.48])
    assert (g["unet"].lo, g["unet"].hi) == pytest.approx((lo, hi), abs=1e-12)
    assert g["unet"].lo < g["unet"].mean < g["unet"].hi
    h = cells_by_model(groups["healthy"], st)
    assert h["unet"].mean == pytest.approx(0.92) and h["swin_unetr"].mean == pytest.approx(0.62)
    assert (h["swin_unetr"].lo, h["swin_unetr"].hi) == pytest.approx(
        t_interval([0.60, 0.62, 0.64]), abs=1e-12
    )
    dr = cells_by_model(groups["diabetic_retinopathy"], st)
    assert dr["unet"].mean == pytest.approx(0.75) and dr["swin_unetr"].mean == pytest.approx(0.70)
    overall = cells_by_model(st.overall, st)
    assert overall["unet"].mean == pytest.approx(5.76 / 8)
    assert overall["swin_unetr"].mean == pytest.approx(5.09 / 8)
    assert (overall["unet"].lo, overall["unet"].hi) == pytest.approx(t_interval(UNET), abs=1e-12)


def test_a_row_that_wins_overall_but_loses_in_a_group_ranks_second_there():
    recs = [record("unet", UNET), record("swin_unetr", SWIN), human([0.8] * len(HRF_CASES))]
    (st,), _ = subgroup_tables(recs, "condition")
    groups = {g.value: g for g in st.groups}
    assert {m: c.rank for m, c in cells_by_model(st.overall, st).items() if m != "second rater"} == {
        "unet": 1.0,
        "swin_unetr": 2.0,
    }
    ranks = {v: {m: c.rank for m, c in cells_by_model(g, st).items()} for v, g in groups.items()}
    assert ranks["glaucoma"]["swin_unetr"] == 1.0 and ranks["glaucoma"]["unet"] == 2.0
    assert ranks["healthy"]["unet"] == 1.0 and ranks["diabetic_retinopathy"]["unet"] == 1.0
    assert all(math.isnan(r["second rater"]) for r in ranks.values())  # shown, never ranked
    text = render_subgroups([st], [], "condition")
    section = table_lines(text, "### condition = glaucoma (3 cases)")
    assert section[2].startswith("| 1 | swin_unetr / dice_ce | 0.610 [")
    assert section[3].startswith("| 2 | unet / dice_ce | 0.500 [") and section[3].endswith("| 0.720 | 1 |")
    assert section[4].startswith("| human | second rater | 0.800")


def test_several_seeds_pool_the_group_cases_and_the_interval_covers():
    second = [v + 0.02 for v in UNET]
    (st,), _ = subgroup_tables([record("unet", UNET), record("unet", second, seed=1)], "condition")
    g = next(g for g in st.groups if g.value == "glaucoma")
    (cell,) = g.cells.values()
    assert cell.mean == pytest.approx((0.50 + 0.52 + 0.48 + 0.52 + 0.54 + 0.50) / 6)
    assert cell.design == "crossed" and cell.n_units == 3
    assert cell.lo < cell.mean < cell.hi and cell.hi - cell.lo < 0.5


CHASE = ("Image_11L", "Image_11R", "Image_12L", "Image_12R", "Image_13L", "Image_13R")
CHASE_DICE = (0.70, 0.60, 0.80, 0.76, 0.65, 0.55)


def test_clusters_are_averaged_within_a_group_only():
    (st,), _ = subgroup_tables([record("unet", CHASE_DICE, CHASE, dataset="chase_db1")], "age_group")
    (g,) = st.groups
    assert g.value == "child" and len(g.cases) == 6
    (cell,) = g.cells.values()
    assert cell.n_units == 3 and cell.n_cases == 6  # both eyes of a child form one unit
    child_means = [(0.70 + 0.60) / 2, (0.80 + 0.76) / 2, (0.65 + 0.55) / 2]
    assert (cell.lo, cell.hi) == pytest.approx(t_interval(child_means), abs=1e-12)
    assert cell.mean == pytest.approx(sum(CHASE_DICE) / 6)
    (st,), _ = subgroup_tables([record("unet", CHASE_DICE, CHASE, dataset="chase_db1")], "eye")
    left = next(g for g in st.groups if g.value == "left")
    (cell,) = left.cells.values()
    assert left.cases == ["Image_11L", "Image_12L", "Image_13L"] and cell.n_units == 3
    assert (cell.lo, cell.hi) == pytest.approx(t_interval([0.70, 0.80, 0.65]), abs=1e-12)


def test_a_csv_dataset_is_split_by_the_file_in_the_records_root(tmp_path):
    root = tmp_path / "Dataset001_X"
    root.mkdir()
    (root / "case_metadata.csv").write_text("case_id,site\nc0,A\nc1,A\nc2,B\nc4,B\n")
    cases = ("c0", "c1", "c2", "c3")
    recs = [record("unet", (0.9, 0.7, 0.4, 0.5), cases, dataset="nnunet_raw", ds_kwargs={"root": str(root)})]
    (st,), _ = subgroup_tables(recs, "site")
    assert [(g.value, g.cases) for g in st.groups] == [("A", ["c0", "c1"]), ("B", ["c2"])]
    assert st.without == ["c3"]
    means = {g.value: next(iter(g.cells.values())).mean for g in st.groups}
    assert means == pytest.approx({"A": 0.8, "B": 0.4})
    assert "No `site` for 1 case(s), left out of the groups: c3." in render_subgroups([st], [], "site")


def test_a_key_no_dataset_has_is_one_line_listing_the_keys():
    recs = [record("unet", UNET), record("unet", CHASE_DICE, CHASE, dataset="chase_db1")]
    with pytest.raises(SubgroupKeyError) as e:
        subgroup_tables(recs, "sex")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--by sex: ")
    assert "keys available: age_group (chase_db1); condition (hrf); eye (chase_db1)" in msg
    split, rest = subgroup_tables(recs, "eye")  # the other table is named as not split
    assert [s.table.dataset for s in split] == ["chase_db1"] and [t.dataset for t in rest] == ["hrf"]


def test_the_command_splits_hand_made_records_and_leaves_the_leaderboard_alone(tmp_path, capsys):
    results = tmp_path / "results"
    for rec in (record("unet", UNET), record("swin_unetr", SWIN)):
        write_json_atomic(results / f"{rec['run_id']}.json", rec)
    board = tmp_path / "board.md"
    assert main(["leaderboard", "--results", str(results), "--by", "condition", "--output", str(board)]) == 0
    out = capsys.readouterr().out
    for value, n in (("diabetic_retinopathy", 2), ("glaucoma", 3), ("healthy", 3)):
        assert f"### condition = {value} ({n} cases)" in out
    written = tmp_path / "board_by_condition.md"
    assert written.read_text() in out and not board.exists()
    assert main(["leaderboard", "--results", str(results), "--by", "eye", "--output", str(board)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "keys available: condition (hrf)" in err


def test_the_command_on_the_committed_records(tmp_path, capsys):
    results = REPO / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.iterdir()}
    board_before = (REPO / "leaderboard.md").read_bytes()
    out_dir = tmp_path / "x"
    out_dir.mkdir()
    argv = ["leaderboard", "--results", str(results), "--leaderboard", str(out_dir / "leaderboard.md")]
    assert main([*argv, "--by", "eye"]) == 0
    out = capsys.readouterr().out
    chase = out.split("## chase_db1\n")[1]
    assert "8 test cases by `eye`: left 4, right 4." in chase
    for eye in ("left", "right"):
        table = table_lines(chase, f"### eye = {eye} (4 cases)")
        assert table[0].startswith("| # | model / loss | dice [95 % CI] | cases |")
        ranks = [ln.split("|")[1].strip() for ln in table[2:]]
        assert ranks[-1] == "human" and sorted(int(r) for r in ranks[:-1]) == list(range(1, len(ranks)))
        assert all(ln.split("|")[4].strip() == "4" for ln in table[2:])
    assert (out_dir / "leaderboard_by_eye.md").is_file() and not (out_dir / "leaderboard.md").exists()
    # a key no committed table's dataset has: one line listing those there are
    assert main([*argv, "--by", "sex"]) == 2
    err = capsys.readouterr().err
    assert "keys available: age_group (chase_db1); condition (hrf); eye (chase_db1)" in err
    assert {p.name: p.stat().st_mtime_ns for p in results.iterdir()} == before
    assert (REPO / "leaderboard.md").read_bytes() == board_before


def test_by_writes_markdown_only(tmp_path, capsys):
    results = tmp_path / "results"
    rec = record("unet", UNET)
    write_json_atomic(results / "r.json", rec)
    assert main(["leaderboard", "--results", str(results), "--by", "condition", "--format", "csv"]) == 2
    assert "--by: writes Markdown only" in capsys.readouterr().err
    assert json.loads((results / "r.json").read_text())["run_id"] == rec["run_id"]
