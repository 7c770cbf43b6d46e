"""bench.leaderboard.claims: paired loss differences across models, checked on hand-made records."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from bench.leaderboard.claim_stats import one_sided_p, run_mean
from bench.leaderboard.claims import paired_losses
from bench.leaderboard.wilcoxon import smallest_p as min_p
from bench.records.record import Record


def _record(model: str, loss: str, seed: int, dice: float, betti0: float, *, channels: int = 8) -> dict:
    return {
        "kind": "train",
        "status": "done",
        "config": {
            "dataset": {"name": "toy", "kwargs": {}},
            "model": {"name": model, "kwargs": {"channels": channels}},
            "loss": {"name": loss, "kwargs": {}},
            "seed": seed,
            "sweep": "x",
        },
        "aggregates": {"dice": {"mean": dice}, "betti0_err": {"mean": betti0}},
    }


def test_differences_are_seed_means_per_model_and_count_improvements_by_direction():
    records = [
        # model a: dice 0.8/0.7 -> 0.75/0.55 (diff mean -0.1), betti0 10/20 -> 4/6 (diff mean -10)
        _record("a", "dice", 0, 0.8, 10),
        _record("a", "dice", 1, 0.7, 20),
        _record("a", "dice+cldice", 0, 0.75, 4),
        _record("a", "dice+cldice", 1, 0.55, 6),
        # model b: only seed 0 has both losses; diff dice +0.1, betti0 +2
        _record("b", "dice", 0, 0.5, 3),
        _record("b", "dice", 1, 0.9, 1),
        _record("b", "dice+cldice", 0, 0.6, 5),
        # model a at another size: its own row, diff dice -0.2, betti0 -1
        _record("a", "dice", 0, 0.9, 2, channels=16),
        _record("a", "dice+cldice", 0, 0.7, 1, channels=16),
        # failed and other-dataset records are left out
        {**_record("c", "dice", 0, 0.1, 1), "status": "failed"},
        {
            **_record("c", "dice+cldice", 0, 0.9, 0),
            "config": {**_record("c", "dice", 0, 0, 0)["config"], "dataset": {"name": "other"}},
        },
    ]
    out = paired_losses(
        [Record.from_dict(r) for r in records], "toy", "dice", "dice+cldice", ("dice", "betti0_err")
    )
    dice = out["summary"]["dice"]
    assert dice["models"] == 3 and dice["improved"] == 1  # only b's Dice went up
    assert math.isclose(dice["median_diff"], -0.1)
    betti = out["summary"]["betti0_err"]
    assert betti["models"] == 3 and betti["improved"] == 2  # lower is better: a and a@16
    assert math.isclose(betti["median_diff"], -1.0)
    # Wilcoxon over 3 models with differences -10, +2, -1: ranks 3, 2, 1; exact two-sided p = 0.75
    assert math.isclose(betti["wilcoxon_p"], 0.75)


def test_run_means_come_from_the_cases_when_the_record_has_them():
    data = _record("a", "dice", 0, 0.9, 1.0)
    data["cases"] = [{"case_id": "x", "dice": 0.2}, {"case_id": "y", "dice": 0.4}]
    assert math.isclose(run_mean(Record.from_dict(data), "dice"), 0.3)  # not the aggregate 0.9
    assert math.isclose(run_mean(Record.from_dict(_record("a", "dice", 0, 0.9, 1.0)), "dice"), 0.9)


def test_one_sided_p_is_scipys_on_the_side_the_differences_lean_to():
    d = np.random.default_rng(0).normal(0.3, 1.0, 12)
    assert math.isclose(one_sided_p(d), stats.wilcoxon(d, alternative="greater").pvalue)
    assert one_sided_p(-d) > 0.5


def test_smallest_reachable_p():
    assert min_p(8, 1) == 2 / 2**8 and min_p(4, 6) == 0.75 and min_p(3, 6) == 1.0 and min_p(0, 1) == 1.0
