import math

import pytest

from bench.leaderboard import render, write_leaderboard
from bench.store import write_json_atomic


def record(model, loss, seed, dices, *, status="done", dataset="synthetic_vessels", params=1_500_000):
    return {
        "run_id": f"{dataset}-{model}-{loss}-{seed}",
        "status": status,
        "config": {
            "dataset": {"name": dataset, "kwargs": {}},
            "model": {"name": model, "kwargs": {}},
            "loss": {"name": loss, "kwargs": {}},
            "seed": seed,
            "fold": 0,
            "sweep": "paper",
            "trainer": {"max_steps": 100},
        },
        "cases": [{"case_id": f"c{i}", "dice": d, "betti1_err": 2.0 * i} for i, d in enumerate(dices)],
        "params": params,
        "train_seconds": 10.0 + seed,
        "git": {"commit": "abcdef0123456789"},
    }


def test_rows_pool_cases_over_seeds_and_sort_by_dice(tmp_path):
    recs = [
        record("unet", "dice", 0, [0.8, 0.6]),
        record("unet", "dice", 1, [0.7, 0.9]),
        record("swin_unetr", "dice_ce", 0, [0.95, 0.85]),
        record("swin_unetr", "dice_ce", 1, [0.1], status="failed"),
        record("unet", "dice", 0, [0.5], dataset="drive"),
    ]
    for r in recs:
        write_json_atomic(tmp_path / f"{r['run_id']}.json", r)
    out = write_leaderboard(tmp_path, tmp_path / "leaderboard.md")
    text = out.read_text()
    assert text.index("## drive") < text.index("## synthetic_vessels")
    section = text.split("## synthetic_vessels")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows[0].startswith("| swin_unetr | dice_ce | 0.900 ± 0.071 |")  # best Dice first
    values = [0.8, 0.6, 0.7, 0.9]
    mean = sum(values) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    assert rows[1].startswith(f"| unet | dice | {mean:.3f} ± {std:.3f} |")
    assert "| 1.50 M |" in rows[1] and "| 2 |" in rows[1]
    assert "1 (+1 failed)" in rows[0]
    assert "seeds [0, 1]" in rows[1] and "max_steps 100" in rows[1] and "commit abcdef01" in rows[1]
    assert "dice ↑" in section and "betti1_err ↓" in section


def test_empty_results_render_a_hint():
    assert "No run records yet" in render([])


@pytest.mark.parametrize("status", ["failed"])
def test_dataset_with_only_failed_runs_shows_them(status):
    text = render([record("unet", "dice", 0, [0.5], status=status)])
    assert "| unet | dice |" in text and "no done run" in text


def test_infinite_values_are_counted_not_dropped():
    rec = record("unet", "dice", 0, [0.5, 0.7])
    rec["cases"][0]["hd95"] = 3.0
    rec["cases"][1]["hd95"] = math.inf
    text = render([rec])
    assert "| 3.000 ± 0.000 (+1 ∞) |" in text
