"""Seed ensembles: hand-made records + npz files, the mean of the probabilities scored by hand."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench.evaluate import ensemble as ens
from bench.metrics import case_metrics

GT = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], np.uint8)
# foreground probabilities of two seeds; their mean is [[.8, .6, .55, .1], [.1, .1, .4, .1]]
P0 = np.array([[0.9, 0.4, 0.6, 0.1], [0.1, 0.1, 0.1, 0.1]])
P1 = np.array([[0.7, 0.8, 0.5, 0.1], [0.1, 0.1, 0.7, 0.1]])


def _config(seed: int, channels=(4, 8), save_prob: bool = True) -> dict:
    return {
        "dataset": {"name": "toy", "kwargs": {}},
        "model": {"name": "unet", "kwargs": {"channels": list(channels)}},
        "loss": {"name": "dice_ce", "kwargs": {}},
        "seed": seed,
        "fold": 0,
        "trainer": {"max_steps": 5},
        "optim": {"lr": 0.001},
        "data": {"batch_size": 2, "num_workers": 0},
        "eval": {
            "betti_patch": None,
            "nsd_tolerance": 1.0,
            "save_predictions": -1,
            "save_probabilities": save_prob,
        },
        "sweep": f"s{seed}",
    }


def _member(results: Path, run_id: str, config: dict, fg: np.ndarray | None, *, prob: bool = True) -> dict:
    rec = {
        "schema": 2,
        "kind": "train",
        "run_id": run_id,
        "status": "done",
        "config": config,
        "cases": [{"case_id": "c1", "dice": 0.0}],
        "split": {"test_source": "held_out", "test": ["c1"]},
    }
    if fg is not None:
        rel = f"predictions/{run_id}/c1.npz"
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        arrays = {"pred": (fg > 0.5).astype(np.uint8), "label": GT, "spacing": np.ones(2)}
        if prob:
            arrays["prob"] = np.stack([1 - fg, fg]).astype(np.float16)
        np.savez(results / rel, **arrays)
        rec["predictions"] = {"c1": rel}
    (results / f"{run_id}.json").write_text(json.dumps(rec))
    return rec


@pytest.fixture
def results(tmp_path: Path) -> Path:
    r = tmp_path / "results"
    r.mkdir()
    _member(r, "toy__unet__s0", _config(0), P0)
    _member(r, "toy__unet__s1", _config(1), P1)
    _member(r, "toy__unet_big__s0", _config(0, channels=(8, 16)), P1)  # another row: one seed only
    return r


def test_ensemble_dice_is_the_hand_computed_dice_of_the_mean(results: Path) -> None:
    notes: list[str] = []
    (path,) = ens.ensemble_rows(results, notes=notes)
    rec = json.loads(path.read_text())
    assert rec["kind"] == "ensemble" and rec["status"] == "done"
    assert rec["members"] == ["toy__unet__s0", "toy__unet__s1"] and rec["seeds"] == [0, 1]
    assert re.fullmatch(r"unet / dice_ce \[row [0-9a-f]{6}\] \(ensemble of 2 seeds\)", rec["method"])
    assert rec["config"]["dataset"] == {"name": "toy", "kwargs": {}} and rec["config"]["split"] == "test"
    (case,) = rec["cases"]
    # mean prediction {(0,0), (0,1), (0,2)} against truth {(0,0), (0,1)}: Dice = 2*2 / (3+2)
    assert case["dice"] == pytest.approx(0.8)
    stored = [np.stack([1 - p, p]).astype(np.float16).astype(np.float64) for p in (P0, P1)]
    mean = (stored[0] + stored[1]) / 2  # averaged by hand from what the members saved
    ref = case_metrics(mean, GT.astype(np.int64), spacing=(1.0, 1.0))
    assert {k: v for k, v in case.items() if k != "case_id"} == pytest.approx(ref, nan_ok=True)
    assert case["brier"] == pytest.approx(float(np.mean((mean[1] - GT) ** 2)), abs=1e-9)
    with np.load(results / rec["predictions"]["c1"]) as z:
        assert z["pred"].tolist() == [[1, 1, 1, 0], [0, 0, 0, 0]]
        np.testing.assert_allclose(z["prob"], mean, atol=1e-3)
    assert any("unet / dice_ce [row" in n and "1 done seed(s)" in n for n in notes)
    assert rec["aggregates"]["dice"]["mean"] == pytest.approx(0.8)


def test_rows_are_not_pooled_and_labels_are_plain_without_a_clash(tmp_path: Path) -> None:
    r = tmp_path / "r"
    r.mkdir()
    _member(r, "a0", _config(0), P0)
    _member(r, "a1", _config(1), P1)
    _member(r, "b0", {**_config(2), "optim": {"lr": 0.1}}, P1)  # same model/loss, other row
    _member(r, "b1", {**_config(3), "optim": {"lr": 0.1}}, P0)
    paths = ens.ensemble_rows(r)
    members = sorted(json.loads(p.read_text())["members"] for p in paths)
    assert members == [["a0", "a1"], ["b0", "b1"]]
    labels = {json.loads(p.read_text())["method"] for p in paths}
    assert len(labels) == 2  # the two rows get distinct labels


def test_member_without_probabilities_names_the_run_and_file(results: Path) -> None:
    _member(results, "toy__unet__s1", _config(1), P1, prob=False)
    with pytest.raises(
        ens.EnsembleError, match=r"run toy__unet__s1: .*toy__unet__s1/c1\.npz holds no probabilities"
    ):
        ens.ensemble_rows(results)
    (results / "predictions" / "toy__unet__s1" / "c1.npz").unlink()
    with pytest.raises(ens.EnsembleError, match=r"run toy__unet__s1: prediction file .*c1\.npz is missing"):
        ens.ensemble_rows(results)
    _member(results, "toy__unet__s1", _config(1), None)
    with pytest.raises(ens.EnsembleError, match=r"run toy__unet__s1: no saved prediction for test case 'c1'"):
        ens.ensemble_rows(results)


def test_rows_without_saved_probabilities_are_left_out_with_a_note(tmp_path: Path) -> None:
    r = tmp_path / "r"
    r.mkdir()
    _member(r, "a0", _config(0, save_prob=False), None)
    _member(r, "a1", _config(1, save_prob=False), None)
    notes: list[str] = []
    assert ens.ensemble_rows(r, notes=notes) == []
    assert notes == [
        "toy: unet / dice_ce: no saved probabilities (eval.save_predictions: -1 and "
        "eval.save_probabilities: true save them)"
    ]
    with pytest.raises(ValueError, match="--min-members must be >= 2"):
        ens.ensemble_rows(r, min_members=1)


def test_rerun_keeps_and_a_new_seed_supersedes(results: Path) -> None:
    (first,) = ens.ensemble_rows(results)
    assert ens.ensemble_rows(results) == []
    _member(results, "toy__unet__s2", _config(2), P0)
    (second,) = ens.ensemble_rows(results)
    assert second != first and not first.exists()
    assert json.loads(second.read_text())["method"].endswith("(ensemble of 3 seeds)")
    assert len(list((results / ".superseded").glob("ens__*.json"))) == 1


def test_cli_and_leaderboard_row(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    ens.add_arguments(parser)
    assert ens.main(parser.parse_args(["--results", str(results), "--quiet"])) == 0
    out = capsys.readouterr().out
    assert "(ensemble of 2 seeds): dice 0.8000" in out and "1 ensemble record(s) written" in out
    from bench.leaderboard import render
    from bench.records.store import scan_records

    text = render(scan_records(results)[0], plots=False)
    assert "(ensemble of 2 seeds)" in text


def test_the_members_post_processing_applies_to_the_ensemble(tmp_path: Path) -> None:
    # mean foreground: (0,0) .8, (0,1) .6 (the true blob) and an isolated (1,3) .9
    q0 = np.array([[0.9, 0.4, 0.1, 0.1], [0.1, 0.1, 0.1, 0.9]])
    q1 = np.array([[0.7, 0.8, 0.1, 0.1], [0.1, 0.1, 0.1, 0.9]])
    results = tmp_path / "results"
    results.mkdir()
    for seed, q in ((0, q0), (1, q1)):
        config = _config(seed)
        config["eval"]["postprocess"] = "largest_component"
        _member(results, f"toy__unet__pp__s{seed}", config, q)
    (path,) = ens.ensemble_rows(results)
    (case,) = json.loads(path.read_text())["cases"]
    assert case["dice"] == pytest.approx(1.0)  # the 1-voxel component removed: the truth exactly
    assert case["raw"]["dice"] == pytest.approx(2 * 2 / (3 + 2))  # the plain argmax, by hand
    assert case["brier"] == case["raw"]["brier"]  # calibration is the probabilities'
