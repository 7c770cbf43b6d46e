"""The "not converged" rule on hand-made learning curves (slopes computed by hand)."""

from __future__ import annotations

import math

import pytest

from bench.leaderboard.convergence import SLOPE_PER_1K, row_convergence, tail_slope


def _trace(values: list[float], every: int = 100) -> list[list[float]]:
    return [[every * (i + 1), v, 0.0] for i, v in enumerate(values)]


def test_a_flat_tail_is_converged() -> None:
    rising_then_flat = [0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.78, 0.78, 0.78, 0.78, 0.78, 0.78, 0.78, 0.78, 0.78]
    assert tail_slope(_trace(rising_then_flat)) == pytest.approx(0.0, abs=1e-12)
    assert row_convergence([_trace(rising_then_flat)]).status == "converged"


def test_a_line_still_rising_is_not_converged_with_its_slope_by_hand() -> None:
    # +0.01 Dice every 100 steps: 0.1 Dice per 1,000 steps, far above the threshold
    line = [0.2 + 0.01 * i for i in range(10)]
    assert tail_slope(_trace(line)) == pytest.approx(0.1)
    verdict = row_convergence([_trace(line)])
    assert verdict.status == "not converged" and verdict.slope == pytest.approx(0.1)


def test_only_the_last_fifth_counts() -> None:
    # 15 points: the window is the last 3 (20 % of 15); the early climb does not count
    values = [0.0] * 5 + [0.5] * 7 + [0.80, 0.80, 0.80]
    assert tail_slope(_trace(values)) == pytest.approx(0.0, abs=1e-12)
    # a climb inside the window does: 0.78 -> 0.80 over 200 steps = 0.1 per 1,000 steps
    values[-3:] = [0.78, 0.79, 0.80]
    assert tail_slope(_trace(values)) == pytest.approx(0.1)


def test_a_slope_just_under_the_threshold_is_converged_and_just_over_is_not() -> None:
    per_step = SLOPE_PER_1K / 1000
    under = [0.7 + 0.9 * per_step * 100 * i for i in range(10)]
    over = [0.7 + 1.1 * per_step * 100 * i for i in range(10)]
    assert row_convergence([_trace(under)]).status == "converged"
    assert row_convergence([_trace(over)]).status == "not converged"


def test_one_rising_seed_flags_the_row() -> None:
    flat = _trace([0.8] * 10)
    rising = _trace([0.5 + 0.02 * i for i in range(10)])
    verdict = row_convergence([flat, rising])
    assert verdict.status == "not converged" and verdict.judged == 2 and verdict.runs == 2


def test_too_few_points_or_no_curve_cannot_be_judged() -> None:
    assert math.isnan(tail_slope(_trace([0.1, 0.2, 0.3, 0.4])))
    verdict = row_convergence([[], _trace([0.1, 0.2])])
    assert verdict.status == "unknown" and verdict.judged == 0 and verdict.runs == 2
    # NaN Dice points (a validation without a defined Dice) are left out
    assert math.isnan(tail_slope(_trace([math.nan] * 10)))


def _record(run_id: str, model: str, seed: int, trace: list[list[float]]):
    from bench.records.record import Record

    config = {
        "dataset": {"name": "synthetic_vessels", "kwargs": {"num_test": 2}},
        "model": {"name": model, "kwargs": {}},
        "loss": {"name": "dice_ce", "kwargs": {}},
        "seed": seed,
        "fold": 0,
        "trainer": {"max_steps": 1000},
    }
    cases = [{"case_id": f"c{i}", "dice": 0.5 + 0.1 * i} for i in range(2)]
    return Record(kind="train", run_id=run_id, status="done", config=config, cases=cases, val_trace=trace)


def test_the_leaderboard_marks_a_rising_row_and_says_why() -> None:
    from bench.leaderboard import analyse_records
    from bench.leaderboard.markdown import render_table_md

    flat = _trace([0.1, 0.4, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7])
    rising = _trace([0.1 + 0.05 * i for i in range(10)])  # +0.5 per 1,000 steps to the end
    records = [
        _record("a0", "unet", 0, flat),
        _record("a1", "unet", 1, flat),
        _record("b0", "attention_unet", 0, flat),
        _record("b1", "attention_unet", 1, rising),  # one seed still rising flags the row
        _record("c0", "segresnet", 0, []),  # no curve: cannot be judged
    ]
    (a,) = analyse_records(records)
    status = {r.model: a.convergence[r.key].status for r in a.ranked}
    assert status == {"unet": "converged", "attention_unet": "not converged", "segresnet": "unknown"}
    text = render_table_md(a)
    rows = {
        line.split(" | ")[1]: line
        for line in text.splitlines()
        if line.startswith("| ") and " | dice_ce |" in line
    }
    assert "not converged: validation Dice still rising (+0.5000 per 1,000 steps" in rows["attention_unet"]
    assert "not converged" not in rows["unet"] and "not converged" not in rows["segresnet"]
    assert "1 row(s) not converged" in text and "1 row(s) with a flat end" in text
    assert "1 row(s) without a learning curve long enough to judge" in text


def test_the_learning_curves_figure_is_drawn_and_names_rows_without_a_curve(tmp_path) -> None:
    from PIL import Image

    from bench.leaderboard import analyse_records
    from bench.leaderboard.plots import render_plots

    records = [
        _record("a0", "unet", 0, _trace([0.1, 0.4, 0.6, 0.7, 0.7, 0.7])),
        _record("a1", "unet", 1, _trace([0.2, 0.5, 0.6, 0.7, 0.7, 0.7])),
        _record("c0", "segresnet", 0, []),
    ]
    (a,) = analyse_records(records)
    assert ("learning curves", "curves.png") in a.plot_names()
    (done,) = render_plots([a], tmp_path)
    (curves,) = [f for f in done["files"] if f.name == "curves.png"]
    assert Image.open(curves).size[0] > 300
    assert (
        "segresnet" in done["skipped"]["learning curves"] and "unet" not in done["skipped"]["learning curves"]
    )
    # without any curve there is no such figure
    (b,) = analyse_records([_record("c0", "segresnet", 0, [])])
    assert ("learning curves", "curves.png") not in b.plot_names()


def test_a_table_states_the_published_reference_and_the_gap_by_hand() -> None:
    from bench.leaderboard import analyse_records
    from bench.leaderboard.published import published_sentence
    from bench.records.record import Record

    def chase(run_id: str, seed: int, model: str, dices: list[float]) -> Record:
        config = {
            "dataset": {"name": "chase_db1", "kwargs": {}},
            "model": {"name": model, "kwargs": {}},
            "loss": {"name": "dice_ce", "kwargs": {}},
            "seed": seed,
            "fold": 0,
            "trainer": {"max_steps": 300},
        }
        cases = [{"case_id": f"Image_{11 + i}L", "dice": d} for i, d in enumerate(dices)]
        return Record(kind="train", run_id=run_id, status="done", config=config, cases=cases)

    records = [
        chase("a", 0, "unet", [0.60, 0.70]),
        chase("b", 1, "unet", [0.62, 0.68]),
        chase("c", 0, "attention_unet", [0.50, 0.52]),
    ]
    (a,) = analyse_records(records)
    text = published_sentence(a)
    # the best row's mean by hand: (0.60 + 0.70 + 0.62 + 0.68) / 4 = 0.65; the range 0.80-0.82
    assert "dice 0.80–0.82 for U-Net-class models" in text and "`unet / dice_ce`, has 0.650" in text
    assert "-0.150 from the published range" in text
    assert "a reference, not a comparison" in text
    (b,) = analyse_records([_record("x0", "unet", 0, [])])  # synthetic_vessels: nothing published
    assert published_sentence(b) == ""


def test_a_table_with_no_converged_row_is_labelled_early_training_with_its_budget() -> None:
    from bench.leaderboard import analyse_records
    from bench.leaderboard.markdown import render_table_md

    flat = _trace([0.1, 0.4, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7])
    rising = _trace([0.1 + 0.05 * i for i in range(10)])
    no_flat_end = [_record("b0", "attention_unet", 0, rising), _record("c0", "segresnet", 0, [])]
    (a,) = analyse_records(no_flat_end)
    assert "**Early training at 1,000 steps**: no row of this table is shown converged" in render_table_md(a)
    (a,) = analyse_records([*no_flat_end, _record("a0", "unet", 0, flat)])  # one flat curve: a real end
    assert "Early training" not in render_table_md(a)


def test_the_hippocampus_table_states_the_gap_of_its_mean_dice_by_hand() -> None:
    """The issue's target is the mean Dice of the two classes: nnU-Net's 0.90 / 0.89 average to
    0.895. Two cases, Dice (anterior, posterior) (0.88, 0.86) and (0.90, 0.84): per class 0.890 /
    0.850 (gaps -0.010 / -0.040), mean 0.870 (gap -0.025)."""
    from bench.leaderboard import analyse_records
    from bench.leaderboard.published import published_sentence
    from bench.records.record import Record

    config = {
        "dataset": {"name": "msd_hippocampus", "kwargs": {}},
        "model": {"name": "nnunet_plain", "kwargs": {}},
        "loss": {"name": "dice_ce", "kwargs": {}},
        "seed": 0,
        "fold": 0,
        "trainer": {"max_steps": 300},
    }
    cases = [
        {"case_id": f"hippocampus_00{i}", "dice": (d1 + d2) / 2, "dice_1": d1, "dice_2": d2}
        for i, (d1, d2) in enumerate([(0.88, 0.86), (0.90, 0.84)])
    ]
    (a,) = analyse_records([Record(kind="train", run_id="h", status="done", config=config, cases=cases)])
    text = published_sentence(a)
    assert "dice_1 0.90 for nnU-Net, anterior (head)" in text and "has 0.890" in text
    assert "-0.010 from the published range" in text and "-0.040 from the published range" in text
    assert "dice 0.895 for nnU-Net, the mean of its anterior 0.90 and posterior 0.89" in text
    assert "has 0.870" in text and "-0.025 from the published range" in text
