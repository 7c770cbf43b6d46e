"""The leaderboard (grouping, analysis, Markdown and exports) on hand-made records with known answers,
and on the committed records."""

import copy
import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

import bench.leaderboard as lb
from bench.config import run_from_dict
from bench.leaderboard import html as report
from bench.leaderboard.format import fmt_cell, runs_text
from bench.records.record import Record
from bench.records.store import write_json_atomic

REPO = Path(__file__).resolve().parents[3]


def record(
    model="unet",
    loss="dice_ce",
    seed=0,
    dices=(0.8, 0.7),
    *,
    status="done",
    dataset="drive",
    model_kwargs=None,
    ds_kwargs=None,
    max_steps=100,
    extra=None,
    kind=None,
):
    cfg = run_from_dict(
        {
            "dataset": {"name": dataset, "kwargs": ds_kwargs or {}},
            "model": {"name": model, "kwargs": model_kwargs or {}},
            "loss": {"name": loss},
            "seed": seed,
            "trainer": {"max_steps": max_steps},
        }
    ).to_dict()
    rid = f"{dataset}-{model}-{json.dumps(model_kwargs)}-{loss}-{max_steps}-{seed}-{json.dumps(ds_kwargs)}"
    rec = {
        "schema": 2,
        "kind": kind or "train",
        "run_id": rid,
        "status": status,
        "config": cfg,
        "cases": [
            {"case_id": f"c{i:02d}", "dice": d, **(extra[i] if extra else {})} for i, d in enumerate(dices)
        ],
        "params": 401605,
        "train_seconds": 12.0,
        "steps": max_steps,
        "git": {"commit": "abcdef0123456789", "dirty": False},
        "device": {"accelerator": "cpu"},
    }
    if status != "done":
        rec["error"] = "RuntimeError: out of memory"
        rec["cases"] = []
    return rec


def evaluation(method, dices, *, human=False, dataset="drive"):
    rec = {
        "schema": 2,
        "kind": "evaluation",
        "run_id": f"eval-{method}",
        "status": "done",
        "method": method,
        "config": {
            "dataset": {"name": dataset, "kwargs": {}},
            "method": method,
            "eval": {"betti_patch": None, "nsd_tolerance": 1.0},
            "split": "test",
            "source": {},
        },
        "cases": [{"case_id": f"c{i:02d}", "dice": d} for i, d in enumerate(dices)],
    }
    if human:
        rec["baseline"] = "human"
    return rec


def body_rows(text, section):
    lines = text.split(f"## {section}\n")[1].split("\n## ")[0].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| # |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [ln for ln in lines[start + 2 : end]]


def only(analyses, label=None):
    return next(a for a in analyses if label is None or a.table.label == label)


def typed(records):
    return [Record.from_dict(r) for r in records]


def analyses_of(records, **kw):
    return lb.analyse_records(records, n_resamples=500, **kw)


BASE = np.array([0.62, 0.71, 0.55, 0.80, 0.66, 0.74, 0.59, 0.69, 0.77, 0.64, 0.72, 0.58])


def test_clearly_better_row_is_significant_and_a_tied_row_is_not():
    noise = np.random.default_rng(0).normal(0, 0.002, BASE.size)
    recs = [
        record("unet", dices=BASE + 0.15),
        record("swin_unetr", dices=BASE + 0.15 + noise),
        record("attention_unet", dices=BASE),
    ]
    a = only(analyses_of(recs, all_pairs=True))
    keys = {r.model: r.key for r in a.ranked}
    best = a.best["dice"]
    assert best in (keys["unet"], keys["swin_unetr"])
    other = keys["swin_unetr"] if best == keys["unet"] else keys["unet"]
    assert a.vs_best["dice"][other].mark == "ns"  # testable, not significantly different: no ≈
    worse = a.vs_best["dice"][keys["attention_unet"]]
    assert worse.testable and worse.significant and worse.mark == "*" and worse.p_holm >= worse.p
    assert worse.diff.mean == pytest.approx(-0.15, abs=1e-3)
    pair = next(p for p in a.pairs["dice"] if {p.a, p.b} == {best, keys["attention_unet"]})
    assert pair.significant and pair.p_holm < 0.05 and pair.p_holm >= pair.paired.p  # all pairs: the report
    text = lb.render(recs, plots=False, n_resamples=500)
    rows = {r.split(" | ")[1]: r for r in body_rows(text, "default on drive")}
    assert rows["attention_unet"].count("**") == 0 and " *" in rows["attention_unet"]
    assert (
        "≈" not in text.split("## default on drive")[1]
        and " ns" in rows[next(r.model for r in a.ranked if r.key == other)]
    )


def test_configurations_are_separate_rows_and_budgets_and_dataset_settings_separate_tables():
    recs = [
        record("unet", model_kwargs={"channels": [8, 16, 32]}, dices=[0.6, 0.7]),
        record("unet", model_kwargs={"channels": [16, 32, 64]}, dices=[0.8, 0.9]),
        record("unet", model_kwargs={"channels": [16, 32, 64]}, dices=[0.82, 0.88], max_steps=200),
        record(
            "unet", model_kwargs={"channels": [16, 32, 64]}, dices=[0.8, 0.8], ds_kwargs={"annotator": "2nd"}
        ),
    ]
    tables = lb.group_records(typed(recs))
    # one table never mixes budgets (nor dataset settings)
    assert sorted(t.label for t in tables) == [
        "default on drive (annotator 2nd, budget 100 steps)",
        "default on drive (default annotator, budget 100 steps)",
        "default on drive (default annotator, budget 200 steps)",
    ]
    main = next(t for t in tables if t.label == "default on drive (default annotator, budget 100 steps)")
    labels = sorted(r.label for r in main.rows)
    assert labels == ["unet (channels 16-32-64)", "unet (channels 8-16-32)"]
    text = lb.render(recs, plots=False, n_resamples=200)
    assert "## default on drive (annotator 2nd, budget 100 steps)" in text
    assert len(body_rows(text, "default on drive (default annotator, budget 100 steps)")) == 2
    patch = record("unet", dices=[0.8, 0.8])
    patch["config"]["data"]["patch_size"] = [128, 128]
    labels = sorted(t.label for t in lb.group_records(typed([recs[0], patch])))
    assert labels == [
        "default on drive (the dataset's default training patch)",
        "default on drive (training patch 128×128)",
    ]
    weighted = copy.deepcopy(recs[0])
    weighted["config"]["loss"]["kwargs"] = {"weight": 0.5}
    rows = lb.group_records(typed([recs[0], weighted]))[0].rows
    assert sorted(r.loss for r in rows) == ["dice_ce (weight 0.5)", "dice_ce (weight none)"]


def test_seeds_pool_into_one_row_with_a_crossed_interval():
    recs = [record(seed=s, dices=BASE + 0.05 * s) for s in range(3)]
    a = only(analyses_of(recs))
    assert len(a.ranked) == 1
    s = a.row_stats[a.ranked[0].key]["dice"]
    pooled = np.concatenate([BASE + 0.05 * k for k in range(3)])
    assert s.reduction["mean"] == pytest.approx(pooled.mean()) and s.reduction["n"] == 36
    assert s.ci.design == "crossed" and s.ci.n_runs == 3 and s.n_runs == 3 and s.ci.n_units == 12
    assert s.ci.seed_sd == pytest.approx(0.05)  # seeds shift every case alike: all seed effect
    assert s.seed_sd == pytest.approx(np.std([BASE.mean() + 0.05 * k for k in range(3)], ddof=1))
    assert 0 < s.seed_share < 1
    assert runs_text(a.ranked[0], "seed") == "0,1,2"


def test_within_training_noise_flag():
    rng = np.random.default_rng(1)
    recs = [record("unet", seed=s, dices=BASE + rng.normal(0, 0.03)) for s in range(3)]
    recs += [record("swin_unetr", seed=s, dices=BASE + 0.002 + rng.normal(0, 0.03)) for s in range(3)]
    recs += [record("attention_unet", seed=s, dices=BASE - 0.3) for s in range(3)]
    a = only(analyses_of(recs, all_pairs=True))
    flags = {
        frozenset(r.model for r in a.ranked if r.key in (p.a, p.b)): p.within_noise for p in a.pairs["dice"]
    }
    assert flags[frozenset({"unet", "swin_unetr"})] is True
    assert flags[frozenset({"unet", "attention_unet"})] is False
    md = lb.render_analyses([a])
    assert "Within training noise (difference below the seed spread; " in md
    best = a.best["dice"]
    other = {"unet", "swin_unetr"} - {r.model for r in a.ranked if r.key == best}
    assert f"dice: {other.pop()} / dice_ce vs the best" in md
    assert "pairs within training noise (" in report.render_html([a], plots=False)


def test_failed_runs_missing_cases_and_fewer_seeds_are_shown_not_dropped():
    recs = [
        record("unet", seed=0, dices=[0.8, 0.7, 0.6]),
        record("unet", seed=1, dices=[0.8, 0.7, 0.6]),
        record("swin_unetr", seed=0, dices=[0.9, 0.8]),  # one seed, a case missing
        record("swin_unetr", seed=1, status="failed"),
        record("attention_unet", seed=0, status="failed"),
    ]
    text = lb.render(recs, plots=False, n_resamples=200)
    rows = {r.split(" | ")[1]: r for r in body_rows(text, "default on drive")}
    assert rows["attention_unet"].startswith("| failed |") and "out of memory" in rows["attention_unet"]
    assert "1 run(s) not done" in rows["swin_unetr"] and "missing 1 of 3 cases" in rows["swin_unetr"]
    assert "1 of the table's 2 seed×fold runs" in rows["swin_unetr"]
    assert "(failed)" in text  # the failed record id is listed in the provenance


def test_human_baseline_is_shown_outside_the_ranking():
    recs = [
        record("unet", dices=[0.7, 0.6]),
        record("swin_unetr", dices=[0.75, 0.65]),
        evaluation("second annotator", [0.95, 0.9], human=True),
    ]
    a = only(analyses_of(recs))
    assert [r.model for r in a.human] == ["second annotator"] and len(a.ranked) == 2
    assert a.best["dice"] not in {r.key for r in a.human}
    rows = body_rows(lb.render_analyses([a]), "default on drive")
    assert rows[-1].startswith("| human | second annotator |") and "**" not in rows[-1]


def test_human_baseline_without_patch_metrics_joins_the_table_that_has_them():
    train = record("unet", dices=[0.7, 0.6])
    train["config"]["eval"]["betti_patch"] = 64
    human = evaluation("second annotator", [0.95, 0.9], human=True)
    other = evaluation("second annotator", [0.9, 0.9], human=True, dataset="stare")
    tables = lb.group_records(typed([train, human, other]))
    assert [t.label for t in tables] == ["default on drive", "stare"]
    assert [r.model for r in tables[0].rows] == ["unet", "second annotator"]
    train2 = copy.deepcopy(train)
    train2["config"]["eval"]["nsd_tolerance"] = 2.0  # a different tolerance: the numbers differ
    tables = lb.group_records(typed([train2, human]))
    assert len(tables) == 2


def test_evaluation_rows_are_ranked_with_train_rows():
    recs = [record("unet", dices=[0.7, 0.6]), evaluation("seed ensemble", [0.9, 0.8])]
    a = only(analyses_of(recs))
    assert [r.model for r in a.ranked] == ["seed ensemble", "unet"]


def test_rank_then_aggregate_differs_from_aggregate_then_rank():
    recs = [record("unet", dices=[0.9, 0.9, 0.9, 0.1]), record("swin_unetr", dices=[0.85] * 4)]
    a = only(analyses_of(recs, metrics=["dice"]))
    key = {r.model: r.key for r in a.ranked}
    assert a.agg_rank["dice"][key["swin_unetr"]] == 1 and a.agg_rank["dice"][key["unet"]] == 2
    assert a.case_rank["dice"][key["unet"]] == 1.25 and a.case_rank["dice"][key["swin_unetr"]] == 1.75


def test_ranks_read_directions_from_the_registry():
    extra_a = [{"betti0_err": 1.0}, {"betti0_err": 2.0}]
    extra_b = [{"betti0_err": 9.0}, {"betti0_err": 8.0}]
    recs = [
        record("unet", dices=[0.7, 0.7], extra=extra_a),
        record("swin_unetr", dices=[0.8, 0.8], extra=extra_b),
    ]
    a = only(analyses_of(recs, metrics=["betti0_err", "dice"]))  # lower is better: unet first
    assert a.primary == "betti0_err" and [r.model for r in a.ranked] == ["unet", "swin_unetr"]
    assert a.best["betti0_err"] == a.ranked[0].key and a.best["dice"] == a.ranked[1].key


def test_rows_are_ordered_by_the_primary_metric_not_the_combined_rank():
    # swin_unetr has the best Dice; unet wins clDice, both Betti errors and ECE: the combined rank
    # puts unet first, the table (bold best Dice at the top) puts swin_unetr first
    good = {"cldice": 0.9, "betti0_err": 1.0, "betti1_err": 1.0, "ece": 0.01}
    bad = {"cldice": 0.5, "betti0_err": 9.0, "betti1_err": 9.0, "ece": 0.2}
    recs = [
        record("unet", dices=BASE, extra=[good] * BASE.size),
        record("swin_unetr", dices=BASE + 0.05, extra=[bad] * BASE.size),
        record("attention_unet", dices=BASE + 0.05, extra=[bad] * BASE.size),  # ties swin_unetr
    ]
    a = only(analyses_of(recs))
    assert a.primary == "dice" and a.rank_metrics[0] == "dice"
    assert [r.model for r in a.ranked] == ["attention_unet", "swin_unetr", "unet"]  # ties: by label
    k = {r.model: r.key for r in a.ranked}
    assert a.combined[k["unet"]] == 1 and a.combined[k["swin_unetr"]] > 1  # kept as data
    assert a.best["dice"] == a.ranked[0].key and a.is_best("dice", k["swin_unetr"])
    assert [a.agg_rank["dice"][r.key] for r in a.ranked] == [1, 1, 3]
    assert a.stability is a.metric_stability["dice"]  # the stability of the table's order
    np.testing.assert_array_equal(a.stability.full, [1, 1, 3])
    rows = json.loads(lb.render_analyses([a], "json"))["tables"][0]["rows"]
    assert [r["combined_rank"] for r in rows] == [2, 2, 1]  # the JSON export keeps the combined rank
    assert [r["label"] for r in rows] == ["attention_unet", "swin_unetr", "unet"]


def test_the_all_pairs_tests_are_opt_in():
    recs = [record("unet", dices=BASE), record("swin_unetr", dices=BASE + 0.1), record("x", dices=BASE - 0.1)]
    a = only(analyses_of(recs))
    assert a.pairs == {} and a.all_pairs is False and len(a.vs_best["dice"]) == 2
    b = only(analyses_of(recs, all_pairs=True))
    assert b.all_pairs is True and len(b.pairs["dice"]) == 3  # m (m - 1) / 2
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        del d["pairs"], d["all_pairs"]
    assert json.dumps(da) == json.dumps(db)  # the table itself is the same


def test_infinite_and_nan_values_are_counted():
    rec = record(dices=[0.5, 0.7, 0.6], extra=[{"hd95": 3.0}, {"hd95": math.inf}, {"hd95": math.nan}])
    a = only(analyses_of([rec], metrics=["dice", "hd95"]))
    s = a.row_stats[a.ranked[0].key]["hd95"]
    assert (s.reduction["n"], s.reduction["n_inf"], s.reduction["n_nan"]) == (2, 1, 1)
    assert fmt_cell(s).startswith("∞ [") and "(1 ∞, 1 NaN)" in fmt_cell(s)


def test_markdown_parses_with_one_cell_per_column():
    recs = [
        record("unet", dices=BASE),
        record("swin_unetr", dices=BASE + 0.1),
        record("x", status="failed"),
        evaluation("second annotator", BASE + 0.2, human=True),
    ]
    text = lb.render(recs, plots=False, n_resamples=200)
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    tables, i = [], 0
    while i < len(tokens):
        if tokens[i].type == "table_open":
            rows, cells = [], None
            while tokens[i].type != "table_close":
                if tokens[i].type == "tr_open":
                    cells = 0
                elif tokens[i].type in ("th_open", "td_open"):
                    cells += 1
                elif tokens[i].type == "tr_close":
                    rows.append(cells)
                i += 1
            tables.append(rows)
        i += 1
    assert len(tables) == 2  # the leaderboard and the ranking-stability table
    assert tables[0] == [tables[0][0]] * 5 and len(set(tables[1])) == 1


def test_exports_csv_json_latex():
    recs = [record("unet_small", dices=BASE), record("swin_unetr", dices=BASE + 0.1)]
    latex = lb.render(recs, "latex", plots=False, n_resamples=200)
    assert r"unet\_small" in latex and "unet_small" not in latex.replace(r"unet\_small", "")
    assert r"\textbf{" in latex and r"\scriptsize $[" in latex and "dice\\_ce" in latex
    rows = list(csv.DictReader(io.StringIO(lb.render(recs, "csv", plots=False, n_resamples=200))))
    dice = {r["row"]: r for r in rows if r["metric"] == "dice"}
    assert float(dice["unet_small"]["mean"]) == pytest.approx(BASE.mean())
    assert float(dice["swin_unetr"]["ci_lo"]) < BASE.mean() + 0.1 < float(dice["swin_unetr"]["ci_hi"])
    data = json.loads(lb.render(recs, "json", plots=False, n_resamples=200))
    table = data["tables"][0]
    assert table["bootstrap"] == {"n_resamples": 200, "seed": 0, "confidence": 0.95}
    assert table["rows"][0]["label"] == "swin_unetr" and table["primary"] == "dice"
    assert table["pairs"] == {} and table["all_pairs"] is False  # only the comparisons with the best
    data = json.loads(lb.render(recs, "json", plots=False, n_resamples=200, all_pairs=True))
    assert data["tables"][0]["all_pairs"] is True and data["tables"][0]["pairs"]["dice"][0]["n"] == BASE.size
    with pytest.raises(ValueError, match="--format"):
        lb.render(recs, "xml")


def test_write_leaderboard_without_records_raises_and_keeps_out(tmp_path):
    out = tmp_path / "leaderboard.md"
    out.write_text("old")
    (tmp_path / "results").mkdir()
    with pytest.raises(ValueError, match="no run record"):
        lb.write_leaderboard(tmp_path / "results", out)
    assert out.read_text() == "old"


def test_corrupt_records_are_listed_not_raised(tmp_path):
    res = tmp_path / "results"
    write_json_atomic(res / "a.json", record(dices=BASE))
    (res / "broken.json").write_text("{not json")
    out = lb.write_leaderboard(res, tmp_path / "leaderboard.md", plots=False, report=False)
    text = out.read_text()
    assert "## Records left out" in text and "`broken.json` — not valid JSON" in text


def test_links_are_relative_to_the_output_folder(tmp_path):
    res = tmp_path / "results"
    for r in [record("unet", dices=BASE), record("swin_unetr", dices=BASE + 0.1)]:
        write_json_atomic(res / f"{r['run_id']}.json", r)
    out = lb.write_leaderboard(res, tmp_path / "docs" / "leaderboard.md", report=False)
    text = out.read_text()
    assert "[cases](../results/plots/default-on-drive/cases.png)" in text
    assert (out.parent / "../results/plots/default-on-drive/cases.png").is_file()


def test_committed_leaderboard_is_rendered_from_the_committed_records(tmp_path):
    shutil.copytree(
        REPO / "results", tmp_path / "results", ignore=shutil.ignore_patterns("plots", "report.html")
    )
    out = lb.write_leaderboard(tmp_path / "results", tmp_path / "leaderboard.md", results_name="results")
    assert out.read_text() == (REPO / "leaderboard.md").read_text(), (
        "re-render with `segbench leaderboard --results results`"
    )
    assert (tmp_path / "results" / "report.html").is_file()


def test_a_registered_row_statistic_reaches_the_json_and_csv_exports():
    # adding a statistic is one registered function (and this test): no pipeline edit
    from bench.leaderboard import stats

    @stats.row_statistic("worst_unit")
    def worst_unit(matrix: np.ndarray) -> float:
        return float(np.nanmin(np.nanmean(matrix, axis=0)))

    try:
        recs = [record("unet", dices=[0.8, 0.6, 0.7], seed=s) for s in (0, 1)]
        data = json.loads(lb.render(typed(recs), fmt="json", plots=False))
        entry = data["tables"][0]["rows"][0]["metrics"]["dice"]
        assert entry["worst_unit"] == pytest.approx(0.6)
        rows = list(csv.DictReader(io.StringIO(lb.render(typed(recs), fmt="csv", plots=False))))
        assert float(rows[0]["worst_unit"]) == pytest.approx(0.6)
    finally:
        del stats.ROW_STATISTICS["worst_unit"]


def test_the_leaderboard_links_the_uncertainty_and_multirater_records_with_their_description(tmp_path):
    """``segbench uncertainty`` / ``multirater`` records are no tables: the leaderboard links their
    generated pages, with each page's description line; a stray JSON there is not linked."""
    from bench.leaderboard import write_leaderboard
    from bench.records.store import write_json_atomic

    write_json_atomic(tmp_path / "r0.json", record("unet", dices=(0.5, 0.6)))
    (tmp_path / "uncertainty").mkdir()
    write_json_atomic(tmp_path / "uncertainty" / "row_a.json", {"kind": "uncertainty", "name": "row_a"})
    (tmp_path / "uncertainty" / "row_a.md").write_text("# Uncertainty: row_a\n\nunet / dice_ce: 5 seeds.\n")
    write_json_atomic(tmp_path / "uncertainty" / "stray.json", {"kind": "something else"})
    out = write_leaderboard(tmp_path, tmp_path / "leaderboard.md", plots=False, report=False)
    text = out.read_text()
    assert "## Other evaluation protocols" in text
    assert "- [row_a](uncertainty/row_a.md): unet / dice_ce: 5 seeds." in text
    assert "stray" not in text and "multirater" not in text.split("## Other evaluation protocols")[1]


def test_the_uncertainty_table_reads_oracle_random_and_each_scores_aurc_from_the_records(tmp_path):
    """One row per uncertainty record: the oracle's AURC by hand (cases accepted by their own risk),
    random = the mean risk, each score's AURC from the record with the lowest in bold, the best
    OOD AUROC and its score, a member whose own record says it collapsed; a score a record lacks is '–'."""
    from bench.leaderboard import write_leaderboard
    from bench.records.store import write_json_atomic

    write_json_atomic(tmp_path / "r0.json", record("unet", dices=(0.5, 0.6)))
    (tmp_path / "uncertainty").mkdir()
    dice = [0.9, 0.5, 0.7]  # risks 0.1, 0.5, 0.3 -> oracle accepts 0.1, 0.3, 0.5
    oracle = (0.1 + (0.1 + 0.3) / 2 + (0.1 + 0.3 + 0.5) / 3) / 3
    rec = {
        "kind": "uncertainty",
        "name": "row_b",
        "inputs": {
            "model": "mask_former",
            "loss": "dice_ce",
            "dataset": {"name": "chase_db1"},
            "members": [{"run_id": "a"}, {"run_id": "b"}],
            "ood": [{"label": "drive"}],
        },
        "cases": [{"case_id": str(i), "dice": d} for i, d in enumerate(dice)],
        "summary": {
            "unc_msp": {"aurc": 0.31, "auroc": {"drive": 0.7}},
            "unc_ood": {"aurc": 0.25, "auroc": {"drive": 0.95}},
        },
    }
    write_json_atomic(tmp_path / "uncertainty" / "row_b.json", rec)
    collapsed = record("mask_former", dataset="chase_db1", seed=1)
    collapsed["run_id"], collapsed["degenerate"] = "b", {"kind": "all-background", "cases": ["0", "1"]}
    write_json_atomic(tmp_path / "b.json", collapsed)  # member b's own record says it collapsed
    (tmp_path / "uncertainty" / "row_b.md").write_text("# Uncertainty: row_b\n\nmask_former / dice_ce.\n")
    text = write_leaderboard(tmp_path, tmp_path / "leaderboard.md", plots=False, report=False).read_text()
    (line,) = [x for x in text.splitlines() if x.startswith("| chase_db1 |")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "[mask_former / dice_ce](uncertainty/row_b.md)" and cells[3:6] == ["2", "3", "0.700"]
    assert cells[2] == "default, 100 steps"  # member a has no record here; b's gives sweep and budget
    assert cells[6] == f"{oracle:.3f}" and cells[7] == f"{(0.1 + 0.5 + 0.3) / 3:.3f}"
    assert cells[8:10] == ["0.310", "**0.250**"]
    assert cells[10] == "drive 0.950 (unc_ood)"
    assert cells[11] == "1 of 2 runs collapsed (all-background: `b`)"


def test_an_interactive_protocol_never_shares_a_table_with_plain_runs_of_the_same_settings():
    """Two records with the same dataset and settings, one with click-loop metrics (noc85 ...): two
    tables, the interactive one titled by its protocol in the settings and without the published
    reference sentence (its Dice is after the clicks)."""
    clicks = [{"noc85": 3.0, "noc90": 20.0, "dice_at_1": 0.6, "dice_at_3": 0.8, "dice_at_5": 0.86}] * 2
    recs = [record("unet", dataset="chase_db1"), record("resenc_unet", dataset="chase_db1", extra=clicks)]
    tables = lb.group_records(typed(recs))
    assert len(tables) == 2
    by_model = {t.rows[0].model: t for t in tables}
    assert by_model["resenc_unet"].settings["protocol"] == "interactive"
    assert "protocol" not in by_model["unet"].settings
    text = lb.render(typed(recs), fmt="md", plots=False)
    (section,) = [
        part
        for part in text.split("\n## ")
        if part.startswith("default on chase_db1 (interactive test protocol)")
    ]
    assert "Published reference" not in section and "noc85" in section
    assert "Published reference" in text  # the plain table keeps it


def test_rows_whose_only_difference_is_an_added_option_are_labelled_by_that_option():
    """A U-Net with no model options beside one with ``dropout: 0.1``: the labels name the option,
    not the empty options dict (``kwargs`` is no difference of its own)."""
    recs = [record("unet"), record("unet", model_kwargs={"dropout": 0.1})]
    (table,) = lb.group_records(typed(recs))
    assert sorted(r.label for r in table.rows) == ["unet (dropout 0.1)", "unet (dropout none)"]


def test_rows_at_two_size_presets_are_labelled_by_the_preset_not_by_what_it_sets():
    """nnU-Net's plain U-Net at ``small`` (which sets ``base_features 8, max_features 64``) beside
    ``hippocampus`` (which leaves them to the plan): the labels say the preset; an option changed
    beside a preset is still named."""
    small = {"preset": "small", "plan": "hippocampus", "base_features": 8, "max_features": 64}
    recs = [
        record("nnunet_plain", model_kwargs=small),
        record("nnunet_plain", model_kwargs={"preset": "hippocampus", "plan": "hippocampus"}),
    ]
    (table,) = lb.group_records(typed(recs))
    assert sorted(r.label for r in table.rows) == [
        "nnunet_plain (preset hippocampus)",
        "nnunet_plain (preset small)",
    ]
    recs[0]["config"]["model"]["kwargs"]["base_features"] = 16  # not what `small` sets: named
    (table,) = lb.group_records(typed(recs))
    assert "nnunet_plain (base_features 16, preset small)" in {r.label for r in table.rows}


def test_train_seconds_name_how_many_runs_state_them():
    """A run resumed from a checkpoint without a clock has no train_seconds: the row's mean is over
    the runs that state it, and the cell says how many those are (Markdown and HTML)."""
    recs = [record(seed=s, dices=BASE + 0.01 * s) for s in range(3)]
    recs[1]["train_seconds"], recs[2]["train_seconds"] = 30.0, None
    (row,) = body_rows(
        lb.render(typed(recs), plots=False, n_resamples=200), only(analyses_of(recs)).table.label
    )
    assert "| 21 (2 of 3 runs) |" in row  # (12 + 30) / 2
    html = report.render_html(analyses_of(recs), plots=False)
    assert "<td>21 (2 of 3 runs)</td>" in html
    recs[2]["train_seconds"] = 18.0
    (row,) = body_rows(
        lb.render(typed(recs), plots=False, n_resamples=200), only(analyses_of(recs)).table.label
    )
    assert "| 20 |" in row and "of 3 runs" not in row
