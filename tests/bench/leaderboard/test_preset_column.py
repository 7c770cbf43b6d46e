"""Each row states the size preset its network was built at (issue: a table states which preset
each row used): the ``params`` cell reads ``0.35 M (small)``, the export has ``preset``."""

from __future__ import annotations

import pytest

import bench.leaderboard as lb
from bench.leaderboard.exports import render_export
from bench.leaderboard.rowinfo import preset_name
from tests.bench.leaderboard.test_best import BASE, record

# basnet's registered small size, as a record's JSON holds it (lists where the registration has tuples)
BASNET_SMALL = {"features": [8, 16, 32], "blocks": [1, 1, 1], "extra_stages": 1, "extra_blocks": 1}
BASNET_SMALL |= {"rrm_width": 8, "rrm_levels": 3}


@pytest.mark.parametrize(
    ("model", "kwargs", "expected"),
    [
        ("unet", {}, "small"),  # registered without `small`: its defaults are the small preset
        ("unet", {"dropout": 0.1}, "small + dropout"),
        ("basnet", {}, "paper"),  # registered with `small`: its defaults are the paper's size
        # a record's JSON lists match the registration's tuples
        (
            "basnet",
            BASNET_SMALL,
            "small",
        ),
        (
            "basnet",
            {**BASNET_SMALL, "rrm_levels": 4},
            "small + rrm_levels",
        ),
        # a named preset, as the runner records it (its options expanded), and one option changed
        (
            "nnunet_plain",
            {"preset": "small", "plan": "hippocampus", "base_features": 8, "max_features": 64},
            "small",
        ),
        (
            "nnunet_plain",
            {"preset": "hippocampus", "plan": "hippocampus", "base_features": 16},
            "hippocampus + base_features",
        ),
        ("nnunet_plain", {"preset": "paper"}, "paper"),
        ("no_such_model", {}, "?"),
    ],
)
def test_preset_name(model: str, kwargs: dict, expected: str) -> None:
    assert preset_name(model, kwargs) == expected


def test_the_params_cell_and_the_export_name_the_preset() -> None:
    dropout = record("unet", BASE - 0.05)
    dropout["config"]["model"]["kwargs"] = {"dropout": 0.1}
    (a,) = lb.analyse_records([record("unet", BASE, seed=1), dropout], n_resamples=50)
    text = lb.render_analyses([a])
    assert "| 1.0 k (small) |" in text and "| 1.0 k (small + dropout) |" in text
    assert {r["preset"] for r in a.to_dict()["rows"]} == {"small", "small + dropout"}
    csv = render_export([a], "csv")
    assert "preset" in csv.splitlines()[0] and ",small + dropout," in csv
