"""Degenerate runs: the state a record states, the one derived from an older record's per-case
values (all background exactly; all foreground / one class against the constant baselines), and
the runs this finds among the committed records."""

from __future__ import annotations

import math
from pathlib import Path

from bench.leaderboard.degenerate import (
    NEAR_TOLERANCE,
    TOLERANCE,
    load_references,
    row_degeneracy,
    run_degeneracy,
)
from bench.records import load_records
from bench.records.record import Record, degenerate_state

INF, NAN = math.inf, math.nan
_RESULTS = Path(__file__).resolve().parents[3] / "results"


def _train(run_id: str, cases: list[dict], kwargs: dict | None = None, **fields) -> Record:
    dataset = {"name": "synthetic_vessels", "kwargs": {"num_test": 4, **(kwargs or {})}}
    return Record(
        kind="train", run_id=run_id, status="done", config={"dataset": dataset}, cases=cases, **fields
    )


def _binary(cid: str, dice: float, iou: float | None = None, cldice: float = 0.5) -> dict:
    iou = dice / (2 - dice) if iou is None else iou
    return {"case_id": cid, "dice": dice, "iou": iou, "cldice": cldice, "hd95": 3.0, "nsd": 0.5}


def _empty(cid: str) -> dict:  # an empty prediction of a non-empty truth (docs/metrics.md)
    return {
        "case_id": cid,
        "dice": 0.0,
        "iou": 0.0,
        "cldice": 0.0,
        "hd95": INF,
        "nsd": 0.0,
        "betti0_err": 2.0,
    }


_FG = {"c0": 0.25, "c1": 0.3, "c2": 0.2, "c3": 0.35}  # what all foreground scores per case


def _baseline(kwargs: dict | None = None) -> Record:
    dataset = {"name": "synthetic_vessels", "kwargs": {"num_test": 4, **(kwargs or {})}}
    return Record(
        kind="evaluation",
        run_id="eval__fg",
        status="done",
        baseline="constant",
        method="all foreground",
        config={"dataset": dataset, "eval": {"betti_patch": 64, "nsd_tolerance": 1.0}},
        cases=[_binary(c, d, cldice=1.0) for c, d in _FG.items()],
        degenerate={"kind": "all-foreground", "cases": sorted(_FG)},
    )


def test_the_rule_more_than_half() -> None:
    assert degenerate_state({"a": "all-foreground", "b": None}) == {}
    assert degenerate_state({"a": "all-foreground", "b": None, "c": "all-background"}) == {
        "kind": "all-background",  # a tie goes to the first of KINDS
        "cases": ["a", "c"],
    }
    assert degenerate_state({"b": "constant", "a": "constant", "c": "all-foreground"}) == {
        "kind": "constant",
        "cases": ["a", "b", "c"],
    }
    assert degenerate_state({}) == {}


def test_a_stated_field_is_taken_as_is() -> None:
    rec = _train("r", [_binary("c0", 0.8)], degenerate={"kind": "all-foreground", "cases": ["c0"]})
    got = run_degeneracy(rec)
    assert got is not None and got.kind == "all-foreground" and got.cases == ("c0",) and not got.derived


def test_all_background_from_the_values_alone() -> None:
    three = _train("r3", [_empty("c0"), _empty("c1"), _empty("c2"), _binary("c3", 0.7)])
    got = run_degeneracy(three)
    assert got is not None and got.derived and not got.near
    assert (got.kind, got.cases) == ("all-background", ("c0", "c1", "c2"))
    half = _train("r2", [_empty("c0"), _empty("c1"), _binary("c2", 0.7), _binary("c3", 0.6)])
    assert run_degeneracy(half) is None  # exactly half: not degenerate
    finite = _train("rf", [{**_empty(c), "hd95": 7.0} for c in ("c0", "c1", "c2")])
    assert run_degeneracy(finite) is None  # HD95 finite: the prediction was not empty


def test_all_background_multiclass_needs_every_class_empty() -> None:
    def case(cid: str, d1: float, d2: float) -> dict:
        row = {"case_id": cid, "dice": (d1 + d2) / 2}
        for k, d in ((1, d1), (2, d2)):
            row |= {f"dice_{k}": d, f"nsd_{k}": 0.0 if d == 0 else 0.4, f"hd95_{k}": INF if d == 0 else 4.0}
        return row

    empty = _train("e", [case(f"c{i}", 0.0, 0.0) for i in range(3)])
    got = run_degeneracy(empty)
    assert got is not None and got.kind == "all-background" and len(got.cases) == 3
    one_class = _train("o", [case(f"c{i}", 0.0, 0.6) for i in range(3)])  # class 2 predicted
    assert run_degeneracy(one_class) is None
    truth_empty = {"case_id": "c3", "dice_1": NAN, "nsd_1": NAN, "hd95_1": NAN, "dice_2": 0.0}
    truth_empty |= {"nsd_2": 0.0, "hd95_2": INF}  # class 1 absent from truth and prediction
    got = run_degeneracy(_train("t", [truth_empty, case("c0", 0.0, 0.0), case("c1", 0.5, 0.5)]))
    assert got is not None and got.cases == ("c0", "c3")


def test_all_foreground_against_the_constant_baseline() -> None:
    refs = load_references([_baseline({"root": "/elsewhere"})])  # the data folder does not matter
    cases = [_binary(c, d + TOLERANCE / 10, cldice=1.0) for c, d in _FG.items()]
    run = _train("fg", cases[:3] + [_binary("c3", 0.7)])
    assert run_degeneracy(run) is None  # without the baseline all foreground cannot be told
    got = run_degeneracy(run, refs)
    assert got is not None and got.derived and not got.near
    assert (got.kind, got.cases) == ("all-foreground", ("c0", "c1", "c2"))
    off = [_binary(c, d + 100 * TOLERANCE, cldice=1.0) for c, d in _FG.items()]
    got = run_degeneracy(_train("off", off), refs)  # not equal, only nearly
    assert got is not None and got.near
    far = [_binary(c, d + 2 * NEAR_TOLERANCE, cldice=1.0) for c, d in _FG.items()]
    assert run_degeneracy(_train("far", far), refs) is None
    other = _train("other", cases, kwargs={"num_test": 8})  # another dataset: other cases
    assert run_degeneracy(other, refs) is None
    row = row_degeneracy([run, _train("ok", [_binary(c, 0.8) for c in _FG])], refs)
    assert (row.n_runs, row.n_degenerate, row.any_degenerate, row.all_degenerate) == (2, 1, True, False)
    assert row_degeneracy([run], refs).all_degenerate
    baseline = run_degeneracy(_baseline(), refs)  # the baseline states what it is
    assert baseline is not None and baseline.kind == "all-foreground" and not baseline.derived


_FLAGGED = {
    "msd_hippocampus__swin_unetr__dice_ce__s0f0__6cd65d7e7f3f": ("all-background", False),
    # MaskFormer in the 300-step CHASE_DB1 grid (AdamW at the grid's lr 0.003): 4 of 6 runs
    "chase_db1__mask_former__dice_ce__s2f0__064ff700ac38": ("all-background", False),
    "chase_db1__mask_former__dice_ce+cldice__s0f0__72da6cfc76dc": ("all-background", False),
    "chase_db1__mask_former__dice_ce+cldice__s1f0__5e489a03a7b7": ("all-background", False),
    "chase_db1__mask_former__dice_ce+cldice__s2f0__1f2fb2f2c7bc": ("all-background", False),
    **{
        f"synthetic_vessels__{name}": ("all-foreground", near)
        for name, near in {
            "hybridgnet__dice+cldice__s0f0__bb9de0b9b590": False,
            "hybridgnet__dice+cldice__s1f0__ef482eb07274": False,
            "hybridgnet__dice+cldice__s2f0__dda87057fd4c": False,
            "hybridgnet__dice+cldice_skel__s0f0__4efb29f6f847": True,
            "hybridgnet__dice+cldice_skel__s1f0__2bf8152576c0": True,
            "hybridgnet__dice+cldice_skel__s2f0__39d43110604d": False,
            "hybridgnet__dice__s0f0__e370bbd1664d": True,
            "hybridgnet__dice__s1f0__a0fe429877ba": True,
            "hybridgnet__dice__s2f0__ee534b928325": False,
            "oss_net__dice+cldice__s0f0__c8ab146510dc": False,
            "oss_net__dice+cldice__s2f0__55197f6c319b": False,
            "prob_unet__dice+cldice__s0f0__daa27abbf813": False,
            "prob_unet__dice+cldice__s1f0__4d1e49da1ebd": False,
            "prob_unet__dice+cldice__s2f0__030e0a9a4805": False,
            "prob_unet__dice+cldice_skel__s0f0__466af96d2391": False,
            "transdae__dice+cldice__s0f0__e4335ae5c72c": True,
            "transdae__dice+cldice__s1f0__a99a5baa1fdd": True,
            "transdae__dice+cldice__s2f0__5857054abd21": True,
            "tubule_net__dice+cldice__s0f0__8fc0bbf935a0": False,
            "tubule_net__dice+cldice__s1f0__1d2ec7052e6f": False,
        }.items()
    },
}


def test_the_committed_records() -> None:
    """The audit of issue 23: 20 synthetic-grid runs predict (nearly) all foreground, one MSD
    Swin UNETR run and 4 CHASE_DB1 MaskFormer runs all background; every other train run is not
    degenerate. The constant
    baselines themselves state what they are."""
    records = load_records(_RESULTS)[0]
    refs = load_references(records)
    found = {r.run_id: run_degeneracy(r, refs) for r in records if r.kind == "train"}
    flagged = {k: (v.kind, v.near) for k, v in found.items() if v is not None}
    assert flagged == _FLAGGED
    n_cases = {"msd_hippocampus": 52, "synthetic_vessels": 32, "chase_db1": 8}
    assert all(len(found[k].cases) == n_cases[k.split("__")[0]] for k in flagged)
    # derived from the case metrics for the records written before the runner stored the flag
    assert all(found[k].derived == (not k.startswith("chase_db1")) for k in flagged)
    constants = [r for r in records if r.baseline == "constant"]
    assert len(constants) >= 4 and all(run_degeneracy(r, refs).cases for r in constants)


def test_one_class_everywhere_with_a_class_absent_from_the_truth() -> None:
    """A multiclass baseline (class 1 everywhere) scores NaN for a class absent from truth and
    prediction: NaN equals NaN, per class."""
    ref_cases = [
        {"case_id": c, "dice_1": 0.1, "dice_2": NAN, "iou_1": 0.05, "iou_2": NAN} for c in ("a", "b")
    ]
    dataset = {"name": "msd_hippocampus", "kwargs": {}}
    baseline = Record(
        kind="evaluation",
        run_id="eval__c1",
        status="done",
        baseline="constant",
        config={"dataset": dataset},
        cases=ref_cases,
        degenerate={"kind": "constant", "cases": ["a", "b"]},
    )
    run = Record(kind="train", run_id="r", status="done", config={"dataset": dataset}, cases=ref_cases)
    got = run_degeneracy(run, load_references([baseline]))
    assert got is not None and (got.kind, got.cases, got.near) == ("constant", ("a", "b"), False)
