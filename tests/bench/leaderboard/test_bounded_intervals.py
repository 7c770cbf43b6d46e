"""A table's interval of a mean stays inside the values its metric can take: a t interval of a
Betti error (a count, >= 0) over few cases reaches below 0 and one of Dice (<= 1) above 1; the
table prints it cut to the metric's bounds. Hand-computed t intervals; records made here."""

from __future__ import annotations

import math

import pytest

from bench.records.record import Record

CASES = ["c0", "c1", "c2", "c3"]
T_975_DF3 = 3.182446305284263  # Student's t, 97.5 % quantile, 3 degrees of freedom (tables)


def _record(run_id: str, model: str, dice: list[float], betti0: list[float]) -> Record:
    config = {
        "dataset": {"name": "synthetic_vessels", "kwargs": {"num_test": 4}},
        "model": {"name": model, "kwargs": {}},
        "loss": {"name": "dice_ce", "kwargs": {}},
        "seed": 0,
        "fold": 0,
        "trainer": {"max_steps": 300},
    }
    cases = [{"case_id": c, "dice": d, "betti0_err": b} for c, d, b in zip(CASES, dice, betti0, strict=True)]
    return Record(kind="train", run_id=run_id, status="done", config=config, cases=cases)


def _analysis():
    from bench.leaderboard import analyse_records

    # one run each: the interval is Student's t over the 4 cases (mean +- t * sd / 2)
    # model a: dice 1, 1, 1, 0.6 -> mean 0.9, sd 0.2: [0.9 - 0.318, 0.9 + 0.318] -> hi cut to 1
    #          betti0 0, 0, 0, 10 -> mean 2.5, sd 5: [2.5 - 7.956, 2.5 + 7.956] -> lo cut to 0
    # model b: dice 0.5, 0.6, 0.7, 0.6 -> mean 0.6, sd 0.0816: inside [0, 1], unchanged
    (a,) = analyse_records(
        [
            _record("ra", "unet", [1.0, 1.0, 1.0, 0.6], [0.0, 0.0, 0.0, 10.0]),
            _record("rb", "attention_unet", [0.5, 0.6, 0.7, 0.6], [2.0, 3.0, 4.0, 3.0]),
        ]
    )
    return a


def _row(a, model: str):
    return next(r for r in a.ranked if r.records[0].config["model"]["name"] == model)


def test_interval_is_cut_to_the_metric_bounds():
    a = _analysis()
    st = a.row_stats[_row(a, "unet").key]
    half_betti = T_975_DF3 * 5.0 / 2.0
    assert st["betti0_err"].ci.lo == 0.0  # uncut: 2.5 - 7.956 = -5.456
    assert math.isclose(st["betti0_err"].ci.hi, 2.5 + half_betti, rel_tol=1e-12)
    half_dice = T_975_DF3 * 0.2 / 2.0
    assert st["dice"].ci.hi == 1.0  # uncut: 1.218
    assert math.isclose(st["dice"].ci.lo, 0.9 - half_dice, rel_tol=1e-12)
    # a row inside the bounds keeps Student's interval
    other = a.row_stats[_row(a, "attention_unet").key]["dice"].ci
    sd = math.sqrt(sum((x - 0.6) ** 2 for x in (0.5, 0.6, 0.7, 0.6)) / 3)
    assert math.isclose(other.lo, 0.6 - T_975_DF3 * sd / 2, rel_tol=1e-12)
    assert math.isclose(other.hi, 0.6 + T_975_DF3 * sd / 2, rel_tol=1e-12)


def test_the_markdown_cell_prints_the_cut_interval():
    from bench.leaderboard.markdown import render_table_md

    text = render_table_md(_analysis())
    assert "| **0.900 [0.582, 1.000]** | **2.500 [0.000, 10.456]** |" in text  # uncut: 1.218, -5.456


@pytest.mark.parametrize("key", ["dice", "dice_2", "cldice", "nsd", "betti1_err", "hd95", "ece", "noc90"])
def test_bounded_metrics_declare_their_range(key: str):
    from bench.metrics.registry import metric_bounds

    lo, hi = metric_bounds(key)
    assert math.isfinite(lo) and lo >= 0.0 and lo < hi


def test_a_registration_with_its_worst_value_outside_its_bounds_is_refused():
    from bench.metrics.registry import register_metric

    with pytest.raises(ValueError, match="outside its bounds"):
        register_metric(
            "bounded_toy", higher_is_better=True, worst=-1.0, bounds=(0.0, 1.0), description="x", empty="x"
        )(len)


def test_a_crossed_interval_of_several_seeds_is_cut_too():
    """Two seeds on the same cases take the crossed seed x case design (the batched path of a
    table). Betti-0 errors 0, 0, 0, 10 and 0, 0, 0, 12: mean 2.75, MS_seed 0.5, MS_case 60.5,
    MS_res 0.5, so Var(mean) = 60.5 / 8 (se 2.75) with Satterthwaite's df
    60.5^2 / (0.5^2 / 1 + 60.5^2 / 3 + 0.5^2 / 3): the interval 2.75 -+ t * 2.75 reaches -6.0."""
    from scipy import stats

    from bench.leaderboard import analyse_records

    def rec(run_id: str, seed: int, betti0: list[float]) -> Record:
        r = _record(run_id, "unet", [0.8, 0.8, 0.8, 0.8], betti0)
        r.config["seed"] = seed
        return r

    (a,) = analyse_records([rec("s0", 0, [0.0, 0.0, 0.0, 10.0]), rec("s1", 1, [0.0, 0.0, 0.0, 12.0])])
    ci = a.row_stats[a.ranked[0].key]["betti0_err"].ci
    df = 60.5**2 / (0.5**2 / 1 + 60.5**2 / 3 + 0.5**2 / 3)
    t = stats.t.ppf(0.975, df)
    assert ci.design == "crossed" and ci.n_runs == 2
    assert ci.lo == 0.0  # uncut: 2.75 - t * 2.75 = -6.0
    assert math.isclose(ci.hi, 2.75 + t * 2.75, rel_tol=1e-9)


def test_subgroup_cells_and_claim_intervals_are_cut_too():
    """The same cut in a subgroup table (`segbench leaderboard --by`) and in a claim's
    ``mean [lo, hi]`` (README): HRF's healthy cases 01_h-03_h with Dice 1, 1, 0.7 (mean 0.9, sd
    0.1732, t(2) 4.303: uncut hi 1.330)."""
    from bench.config import run_from_dict
    from bench.leaderboard.claim_stats import interval_text
    from bench.leaderboard.subgroups import subgroup_tables

    cases = ("01_h", "02_h", "03_h", "01_g")
    cfg = run_from_dict(
        {"dataset": {"name": "hrf"}, "model": {"name": "unet"}, "loss": {"name": "dice_ce"}}
    ).to_dict()
    rec = Record(
        kind="train",
        run_id="hrf-unet",
        status="done",
        config=cfg,
        cases=[{"case_id": c, "dice": v} for c, v in zip(cases, (1.0, 1.0, 0.7, 0.5), strict=True)],
    )
    (st,), _ = subgroup_tables([rec], "condition")
    healthy = next(g for g in st.groups if g.value == "healthy")
    (cell,) = healthy.cells.values()
    half = 4.302652729911275 * math.sqrt(0.03) / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(3)
    assert cell.hi == 1.0 and math.isclose(cell.lo, 0.9 - half, rel_tol=1e-9)

    three = Record(
        kind="train",
        run_id="x",
        status="done",
        config=cfg,
        cases=[{"case_id": c, "dice": v} for c, v in zip(cases[:3], (1.0, 1.0, 0.7), strict=True)],
    )
    assert interval_text([three], "dice") == f"0.900 [{0.9 - half:.3f}, 1.000]"  # uncut: 1.330
