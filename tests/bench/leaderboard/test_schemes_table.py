"""Tables of training schemes: rows labelled by scheme and label budget, and the sentence that says
whether a scheme beats supervised training at the same label budget (hand-made records whose
differences and Wilcoxon p-values are known)."""

from __future__ import annotations

from bench.records.record import Record

CASES = [f"c{i}" for i in range(8)]


def _record(run_id: str, scheme: str | None, fraction: float | None, seed: int, dice: list[float]) -> Record:
    config: dict = {
        "dataset": {"name": "synthetic_vessels", "kwargs": {"num_test": 8}},
        "model": {"name": "unet", "kwargs": {}},
        "loss": {"name": "dice_ce", "kwargs": {}},
        "seed": seed,
        "fold": 0,
        "trainer": {"max_steps": 300},
        "data": {"batch_size": 2},
    }
    if fraction is not None:
        config["data"]["labelled_fraction"] = fraction
    if scheme is not None:
        config["scheme"] = {"name": scheme, "kwargs": {}}
    cases = [{"case_id": c, "dice": v} for c, v in zip(CASES, dice)]
    return Record(kind="train", run_id=run_id, status="done", config=config, cases=cases)


BASE = [0.50, 0.55, 0.60, 0.52, 0.58, 0.61, 0.49, 0.57]


def _records() -> list[Record]:
    better = [v + 0.05 for v in BASE]  # +0.05 on every case: 8 of 8 pairs, exact p = 2/2^8
    noisy = [v + d for v, d in zip(BASE, [0.01, -0.01, 0.02, -0.02, 0.01, -0.01, 0.0, 0.0])]
    recs = []
    for s in (0, 1):
        # 10 % labels: supervised (written before schemes existed: no scheme key), mean_teacher better
        recs.append(_record(f"sup10_{s}", None, 0.1, s, BASE))
        recs.append(_record(f"mt10_{s}", "mean_teacher", 0.1, s, better))
        # every label: supervised (explicit), ds6 within noise
        recs.append(_record(f"sup100_{s}", "supervised", 1.0, s, BASE))
        recs.append(_record(f"ds6100_{s}", "ds6", 1.0, s, noisy))
    return recs


def test_rows_are_labelled_by_scheme_and_label_budget() -> None:
    from bench.leaderboard import analyse_records
    from bench.leaderboard.format import row_title

    (a,) = analyse_records(_records())
    titles = sorted(row_title(r) for r in a.ranked)
    assert titles == [
        "unet (ds6, every label) / dice_ce",
        "unet (mean_teacher, 10 % labels) / dice_ce",
        "unet (supervised, 10 % labels) / dice_ce",
        "unet (supervised, every label) / dice_ce",
    ]


def test_the_table_says_which_scheme_beats_supervised_at_its_label_budget() -> None:
    from bench.leaderboard import analyse_records
    from bench.leaderboard.markdown import render_table_md
    from bench.leaderboard.schemes import compare_schemes

    (a,) = analyse_records(_records())
    comps = {a.ranked_row(c.row).label: c for c in compare_schemes(a)}
    assert set(comps) == {"unet (mean_teacher, 10 % labels)", "unet (ds6, every label)"}
    mt, ds6 = comps["unet (mean_teacher, 10 % labels)"], comps["unet (ds6, every label)"]
    # each compared with the supervised row of ITS label budget: the differences by hand
    assert abs(mt.paired.diff - 0.05) < 1e-12 and mt.paired.n == 8
    assert abs(ds6.paired.diff - 0.0) < 1e-12
    # exact two-sided Wilcoxon: 8 positive pairs -> 2/2^8; Holm over 2 comparisons doubles the smallest
    assert abs(mt.paired.p - 2 / 2**8) < 1e-12 and abs(mt.p_adj - 2 * 2 / 2**8) < 1e-12
    assert mt.beats and not ds6.beats
    text = render_table_md(a)
    assert "with 10 % of the labels, `unet (mean_teacher, 10 % labels) / dice_ce` beats" in text
    assert "with every label, `unet (ds6, every label) / dice_ce` does not beat" in text
    assert "(the difference is within noise)" in text


def test_a_worse_scheme_is_said_to_be_worse_and_rows_without_a_twin_are_not_compared() -> None:
    from bench.leaderboard import analyse_records
    from bench.leaderboard.markdown import render_table_md
    from bench.leaderboard.schemes import compare_schemes

    worse = [v - 0.1 for v in BASE]
    recs = [_record(f"sup_{s}", None, 0.25, s, BASE) for s in (0, 1)]
    recs += [_record(f"mt_{s}", "mean_teacher", 0.25, s, worse) for s in (0, 1)]
    recs += [_record(f"lone_{s}", "ds6", 0.1, s, BASE) for s in (0, 1)]  # no supervised row at 10 %
    (a,) = analyse_records(recs)
    (comp,) = compare_schemes(a)
    assert abs(comp.paired.diff + 0.1) < 1e-12 and not comp.beats
    assert "does not beat `unet (supervised, 25 % labels) / dice_ce` (worse)" in render_table_md(a)


def test_a_table_without_schemes_has_no_scheme_sentence() -> None:
    from bench.leaderboard import analyse_records
    from bench.leaderboard.markdown import render_table_md

    recs = [_record(f"sup_{s}", None, None, s, BASE) for s in (0, 1)]
    (a,) = analyse_records(recs)
    assert "Training schemes against supervised" not in render_table_md(a)


def test_a_lower_mean_the_test_cannot_tell_from_noise_is_not_called_worse() -> None:
    from bench.leaderboard import analyse_records
    from bench.leaderboard.markdown import render_table_md

    # 3 cases, all lower by 0.01: exact two-sided p = 2/2^3 = 0.25, so not "worse" however narrow
    recs = [_record(f"sup_{s}", None, 0.25, s, BASE[:3]) for s in (0, 1)]
    recs += [_record(f"mt_{s}", "mean_teacher", 0.25, s, [v - 0.01 for v in BASE[:3]]) for s in (0, 1)]
    (a,) = analyse_records(recs)
    text = render_table_md(a)
    assert "(the difference is within noise)" in text and "(worse)" not in text
