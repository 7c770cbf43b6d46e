"""Table titles: the sweep's name plus, in words, the settings that tell a table from its sweep's other
tables of the dataset; records of another sweep never rename a table they did not join."""

import pytest

import bench.leaderboard as lb
from bench.config import run_from_dict
from bench.leaderboard import rows as rows_mod
from bench.leaderboard.format import settings_text
from bench.records.record import Record


def _rec(sweep, model="unet", *, dataset="synthetic_vessels", ds_kwargs=None, betti_patch=64, seed=0):
    cfg = run_from_dict(
        {
            "dataset": {"name": dataset, "kwargs": ds_kwargs or {}},
            "model": {"name": model},
            "loss": {"name": "dice_ce"},
            "seed": seed,
            "eval": {"betti_patch": betti_patch},
        }
    ).to_dict()
    if sweep is not None:
        cfg["sweep"] = sweep
    else:
        cfg.pop("sweep", None)
    rid = f"{sweep}-{dataset}-{model}-{ds_kwargs}-{betti_patch}-{seed}"
    return Record.from_dict(
        {
            "schema": 3,
            "kind": "train",
            "run_id": rid,
            "status": "done",
            "config": cfg,
            "cases": [{"case_id": "c0", "dice": 0.8}, {"case_id": "c1", "dice": 0.7}],
        }
    )


def titles(records):
    return sorted(t.label for t in lb.group_records(records))


# the committed results' shape: the shipped 32-case sweep beside the built-in default sweep
COMMITTED = [
    _rec("synthetic_vessels", ds_kwargs={"num_test": 32}),
    _rec("synthetic_vessels", "swin_unetr", ds_kwargs={"num_test": 32}),
    _rec("default"),
    _rec("chase_db1", dataset="chase_db1"),
]


def test_a_title_is_the_sweep_name_with_the_dataset_when_the_sweep_is_not_named_after_it():
    assert titles(COMMITTED) == ["chase_db1", "default on synthetic_vessels", "synthetic_vessels"]
    assert "num_test" not in " ".join(titles(COMMITTED))  # no config vocabulary, no "num_test none"


def test_records_without_a_sweep_are_titled_by_their_dataset():
    assert titles([_rec(None), _rec(None, "swin_unetr")]) == ["synthetic_vessels"]


def test_settings_that_tell_one_sweeps_tables_apart_are_named_in_words():
    recs = [_rec("vessels", ds_kwargs={"num_test": 32}), _rec("vessels"), _rec("vessels", betti_patch=32)]
    assert titles(recs) == [
        "vessels on synthetic_vessels (Betti patch 32, the dataset's default test cases)",
        "vessels on synthetic_vessels (Betti patch 64, 32 test cases)",
        "vessels on synthetic_vessels (Betti patch 64, the dataset's default test cases)",
    ]


def test_adding_one_record_of_another_sweep_renames_no_other_table():
    before = {t.key: t.label for t in lb.group_records(COMMITTED)}
    for new in (
        _rec("mine", betti_patch=32),  # a table of its own, with a setting none of the others has
        _rec("mine", ds_kwargs={"num_test": 5}),
        _rec("mine", dataset="chase_db1", betti_patch=None),
    ):
        after = {t.key: t.label for t in lb.group_records([*COMMITTED, new])}
        assert {k: after[k] for k in before} == before, new.run_id
        assert after.keys() - before.keys()  # the new sweep's own table
    # a record of another sweep that joins a table lists both sweeps in that table's title only
    joined = {t.key: t for t in lb.group_records([*COMMITTED, _rec("mine", "unet", seed=1)])}
    changed = {k for k in before if joined[k].label != before[k]}
    assert len(changed) == 1 and joined[changed.pop()].label == "default + mine on synthetic_vessels"


def test_a_table_of_several_sweeps_lists_them_and_the_markdown_says_so():
    recs = [_rec("a"), _rec("b", "swin_unetr")]
    (table,) = lb.group_records(recs)
    assert table.label == "a + b on synthetic_vessels" and table.sweeps == ["a", "b"]
    text = lb.render(recs, plots=False, n_resamples=50)
    assert "## a + b on synthetic_vessels\n" in text and "Sweeps: a, b." in text


def test_the_settings_line_is_in_words():
    text = settings_text({"num_test": 32, "betti_patch": 64, "nsd_tolerance": 1.0, "patch_size": [64, 64]})
    assert text == "Betti patch 64, NSD tolerance 1.0, 32 test cases, training patch 64×64"
    assert settings_text({"annotator": None, "betti_patch": None}) == (
        "default annotator, Betti errors on whole images"
    )
    assert settings_text({"check_val_every_n_epoch": 1}) == "validation every epoch"
    assert settings_text({"some_new_arg": 3}) == "some new arg 3"  # not listed: its name, spelled out


def test_words_come_from_the_registry(monkeypatch):
    monkeypatch.setitem(rows_mod.SETTING_WORDS, "num_test", lambda v: f"{v} held-out images")
    recs = [_rec("vessels", ds_kwargs={"num_test": 32}), _rec("vessels", ds_kwargs={"num_test": 8})]
    assert titles(recs) == [
        "vessels on synthetic_vessels (32 held-out images)",
        "vessels on synthetic_vessels (8 held-out images)",
    ]


@pytest.mark.parametrize(
    "n, words", [(1, "1 test case"), (2, "2 test cases"), (None, "the dataset's default")]
)
def test_counts_are_spelled_for_one_and_many(n, words):
    assert rows_mod.setting_words("num_test", n).startswith(words)


def _budget(rec: Record, steps: int) -> Record:
    rec.config["trainer"]["max_steps"] = steps
    rec.run_id = f"{rec.run_id}-{steps}"
    return rec


def test_one_table_never_mixes_budgets() -> None:
    short = [_budget(_rec("chase_db1", dataset="chase_db1", seed=s), 300) for s in (0, 1)]
    long = [_budget(_rec("chase_db1", dataset="chase_db1", seed=s), 10_000) for s in (0, 1)]
    tables = lb.group_records(short + long)
    assert len(tables) == 2
    assert sorted(t.label for t in tables) == [
        "chase_db1 (budget 10,000 steps)",
        "chase_db1 (budget 300 steps)",
    ]
    for t in tables:
        (row,) = t.rows
        assert len({r.config["trainer"]["max_steps"] for r in row.records}) == 1
