"""A sweep's ``eval.external``: every trained run is also tested on other datasets' test splits by its
kept model (the path of ``segbench evaluate --run``), checked for compatibility before anything
trains, and shown on the leaderboard as a "trained on A → tested on B" matrix (docs/external.md).

The real-data test trains a tiny U-Net on CHASE_DB1 and tests it on DRIVE and VEVIO (STARE is not
among the shared datasets; VEVIO's 640x480 frames are the cheapest other retinal dataset there).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy import stats as sps

import bench.leaderboard as lb
from bench.cli import main
from bench.config import ComponentSpec, ConfigError, load_sweep, run_from_dict, sweep_from_dict
from bench.evaluate.outside import evaluate_externals, external_evaluator
from bench.leaderboard import write_leaderboard
from bench.leaderboard.transfer import transfer_matrices
from bench.records import load_records
from bench.records.record import Record
from bench.run import run_sweep
from datamodules import create_datamodule
from tests.conftest import REPO, tiny_sweep_dict
from tests.datamodules.conftest import shared_root

SCALE = 0.25


def _sweep(**eval_updates: object) -> dict:
    chase = {"name": "chase_db1", "root": str(shared_root("CHASE_DB1")), "scale": SCALE, "limit_cases": 2}
    external = [
        {"name": "drive", "root": str(shared_root("DRIVE")), "limit_cases": 2},
        {"name": "vevio", "root": str(shared_root("VEVIO")), "limit_cases": 2, "scale": 0.5},
        "chase_db1",  # the run's own dataset: skipped (its test split is the run's own record)
    ]
    ev = {"sw_batch_size": 4, "betti_patch": 32, "save_predictions": 0, "external": external, **eval_updates}
    return tiny_sweep_dict(name="transfer", datasets=[chase], eval=ev)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    results = tmp_path_factory.mktemp("external")
    sweep = sweep_from_dict(_sweep())
    (record,) = run_sweep(sweep, results, progress=False, after_run=external_evaluator(results))
    assert record.done, record.traceback
    return results, sweep


def _externals(results: Path) -> dict[str, object]:
    return {r.dataset["name"]: r for r in load_records(results)[0] if r.kind == "evaluation"}


def test_every_external_dataset_gets_one_record_naming_the_run(trained) -> None:
    results, sweep = trained
    run_id = sweep.expand()[0].run_id
    ext = _externals(results)
    assert set(ext) == {"drive", "vevio"}
    for name, rec in ext.items():
        assert rec.config["source"]["run"] == run_id and rec.config["source"]["trained_on"] == "chase_db1"
        assert rec.config["split"] == "test"
        # the trained dataset's scale and split seed are inherited; the entry's own arguments win
        want = {"scale": SCALE if name == "drive" else 0.5, "split_seed": 0}
        assert {k: rec.config["dataset"]["kwargs"][k] for k in want} == want


def test_the_matrix_cell_is_segbench_evaluate_on_the_saved_predictions(trained, tmp_path) -> None:
    results, sweep = trained
    out = write_leaderboard(results, tmp_path / "lb.md", plots=False, report=False)
    text = out.read_text()
    section = text[text.index("## Trained on A → tested on B") :]
    assert "| model | loss | chase_db1 (own test) | drive | vevio |" in section
    row = next(line for line in section.splitlines() if line.startswith("| unet | dice_ce |"))
    # the external tests are in the matrix, not rows (or tables) of DRIVE and VEVIO
    assert "## " not in text[: text.index("## Trained on A")].replace("## transfer on chase_db1", "")
    drive = _externals(results)["drive"]
    root = shared_root("DRIVE")
    argv = [sys.executable, "-m", "bench.cli", "evaluate", "--pred", drive.config["source"]["pred_dir"]]
    argv += ["--dataset", "drive", "--root", str(root), "--pred-glob", "*.png", "--name", "check"]
    for k, v in drive.config["dataset"]["kwargs"].items():
        argv.append(f"--dataset-arg={k}={json.dumps(v)}")
    argv += ["--results", str(tmp_path / "again"), "--workers", "1", "--quiet", "--betti-patch", "32"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (again,) = load_records(tmp_path / "again")[0]
    mean = again.aggregates["dice"]["mean"]
    (matrix,) = transfer_matrices(load_records(results)[0])
    col = next(c.key for c in matrix.columns if c.dataset == "drive")
    cell = matrix.rows[0].cells[col]
    assert cell.runs == 1
    assert math.isclose(cell.stats.reduction["mean"], mean, rel_tol=0, abs_tol=1e-12)
    # one run: Student's t over the cases, as the main tables print it
    dice = np.array([c["dice"] for c in again.cases])
    lo, hi = sps.t.interval(0.95, dice.size - 1, loc=dice.mean(), scale=sps.sem(dice))
    assert f"{mean:.3f} [{lo:.3f}, {hi:.3f}] n=1" in row.split(" | ")
    # Dice by hand on one case file: the label map against the DataModule's truth, inside its FOV
    case_id = again.cases[0]["case_id"]
    pred = np.asarray(Image.open(Path(drive.config["source"]["pred_dir"]) / f"{case_id}.png")) > 0
    dm = create_datamodule("drive", root=str(root), **drive.config["dataset"]["kwargs"])
    dm.setup("test")
    case = dm.case(case_id)
    truth, fov = case.label > 0, case.fov if case.fov is not None else np.ones_like(pred)
    p, g = pred & fov, truth & fov
    by_hand = 2 * np.sum(p & g) / (np.sum(p) + np.sum(g))
    assert math.isclose(again.cases[0]["dice"], by_hand, rel_tol=1e-9)


def test_a_second_pass_keeps_recorded_tests_and_a_fresh_run_makes_them_again(trained, monkeypatch) -> None:
    results, sweep = trained
    cfg = sweep.expand()[0]
    before = {p.name for p in results.glob("eval__*.json")}

    def no_predicting(*args: object, **kwargs: object) -> None:
        raise AssertionError("an external test already recorded was predicted again")

    monkeypatch.setattr("bench.evaluate.predict.predict", no_predicting)
    assert run_sweep(sweep, results, progress=False, after_run=external_evaluator(results)) == []
    assert {p.name for p in results.glob("eval__*.json")} == before
    monkeypatch.undo()
    outcomes = evaluate_externals(cfg, results, fresh=True)  # the run was trained again (--force)
    assert [o.existed for o in outcomes] == [False, False]
    assert {p.name for p in results.glob("eval__*.json")} == before  # same predictions, same ids
    index = (results / ".superseded" / "index.jsonl").read_text()
    assert sum("external test is made again" in line for line in index.splitlines()) == 2


def test_an_external_test_that_fails_is_one_line_and_writes_nothing(trained, tmp_path, capsys) -> None:
    results, sweep = trained
    cfg = sweep.expand()[0]
    missing = ComponentSpec("drive", {"root": str(tmp_path / "no-drive"), "limit_cases": 1})
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, external=(missing,)))
    before = sorted(p.name for p in results.glob("eval__*.json"))
    assert evaluate_externals(cfg, results) == []
    err = capsys.readouterr().err.strip()
    said = f"external test of {cfg.run_id} on drive failed: "
    assert len(err.splitlines()) == 1 and err.startswith(said), err
    assert sorted(p.name for p in results.glob("eval__*.json")) == before


def _run_cli(tmp_path: Path, data: dict, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    rc = main(["run", str(path), "--results", str(tmp_path / "results"), "--quiet", "--no-leaderboard"])
    return rc, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    ("external", "message"),
    [
        (
            [{"name": "isbi2012_em"}],
            "eval.external[0] (isbi2012_em): 1 channel, the sweep's dataset chase_db1 has 3",
        ),
        (
            ["drive", "msd_hippocampus"],
            "eval.external[1] (msd_hippocampus): 3D, the sweep's dataset chase_db1 is 2D",
        ),
    ],
)
def test_an_incompatible_external_dataset_is_one_line_and_nothing_trains(
    tmp_path, capsys, external, message
) -> None:
    data = _sweep(external=external)
    rc, err = _run_cli(tmp_path, data, capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not list((tmp_path / "results").glob("*.json"))


def test_class_counts_must_match_and_other_class_names_are_reported() -> None:
    count = r"eval.external\[0\] \(msd_hippocampus\): 3 classes, the sweep's dataset msd_spleen has 2"
    with pytest.raises(ConfigError, match=count):
        sweep_from_dict(tiny_sweep_dict(datasets=["msd_spleen"], eval={"external": ["msd_hippocampus"]}))
    names = r"eval.external\[0\] \(isbi2012_em\): class names \['background', 'membrane'\] differ"
    with pytest.warns(UserWarning, match=names):
        sweep_from_dict(tiny_sweep_dict(eval={"external": ["isbi2012_em"]}))  # synthetic_vessels: foreground


def test_external_needs_a_kept_model(tmp_path, capsys) -> None:
    rc, err = _run_cli(tmp_path, _sweep(keep_model="none"), capsys)
    assert rc == 2 and "eval.external: needs eval.keep_model: final" in err, err


def test_external_sets_change_no_run_id_and_need_the_evaluation_step(tmp_path) -> None:
    with_ext = sweep_from_dict(_sweep()).expand()[0]
    plain = sweep_from_dict(_sweep(external=[])).expand()[0]
    assert with_ext.run_id == plain.run_id
    with pytest.raises(ConfigError, match="eval.external: this caller does not test runs"):
        run_sweep(sweep_from_dict(_sweep()), tmp_path, progress=False)
    assert not list(tmp_path.glob("*.json"))


def test_the_shipped_retinal_matrix_sweep_plans_with_a_dry_run(tmp_path, capsys) -> None:
    data = yaml.safe_load((REPO / "bench/sweeps/retinal_matrix.yaml").read_text())
    folders = {"drive": "DRIVE", "chase_db1": "CHASE_DB1", "hrf": "HRF", "vevio": "VEVIO"}
    for entry in data["datasets"]:  # the same entries are the external ones (a YAML alias)
        name = entry["name"]
        entry["root"] = (
            str(shared_root(folders[name])) if name in folders else str(tmp_path)
        )  # stare downloads
    assert [e["name"] for e in data["eval"]["external"]] == ["drive", "stare", "chase_db1", "hrf", "vevio"]
    path = tmp_path / "retinal_matrix.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--dry-run", "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "15 run(s): 0 done, 0 failed, 15 to run" in out
    # the CHASE_DB1 runs are those of the chase_db1 sweep's settings: eval.external is not in the id
    assert load_sweep(path).expand()[6].run_id == "chase_db1__unet__dice_ce__s0f0__83c2270b6274"


# ---- the matrix from records (no training) ------------------------------------------------------


def _train(seed: int, dices: list[float]) -> dict:
    cfg = run_from_dict(
        {"dataset": {"name": "drive"}, "model": {"name": "unet"}, "loss": {"name": "dice_ce"}}
    )
    cfg = dataclasses.replace(cfg, seed=seed)
    return {
        "schema": 2,
        "kind": "train",
        "run_id": cfg.run_id,
        "status": "done",
        "config": cfg.to_dict(),
        "cases": [{"case_id": f"c{i}", "dice": d} for i, d in enumerate(dices)],
        "split": {"class_names": ["background", "foreground"]},
    }


def _tested(
    run: dict, dataset: str, dices: list[float], classes: tuple[str, ...] = ("background", "foreground")
) -> dict:
    seed = run["config"]["seed"]
    method = f"unet / dice_ce (trained on drive, seed {seed})"
    return {
        "schema": 2,
        "kind": "evaluation",
        "run_id": f"eval__{dataset}__{seed}__{run['run_id']}",
        "status": "done",
        "method": method,
        "config": {
            "dataset": {"name": dataset, "kwargs": {"split_seed": 0, "root": "/data"}},
            "method": method,
            "eval": {"betti_patch": None, "nsd_tolerance": 1.0},
            "split": "test",
            "source": {"run": run["run_id"], "trained_on": "drive"},
        },
        "cases": [{"case_id": f"{dataset}{i}", "dice": d} for i, d in enumerate(dices)],
        "split": {"class_names": list(classes)},
    }


def test_the_matrix_pools_seeds_says_what_is_missing_and_leaves_the_main_tables() -> None:
    runs = [_train(s, [0.70 + 0.01 * s, 0.62, 0.81 - 0.02 * s, 0.75]) for s in range(3)]
    stare = [_tested(r, "stare", [0.50 + 0.03 * i, 0.41, 0.66]) for i, r in enumerate(runs[:2])]
    vevio = [_tested(r, "vevio", [0.3, 0.35], ("background", "vessel")) for r in runs]
    orphan = _tested({**runs[0], "run_id": "gone"}, "stare", [0.1, 0.2, 0.3])  # its training run is absent
    orphan["method"] = orphan["config"]["method"] = "from an exported model"
    records = [Record.from_dict(r) for r in [*runs, *stare, *vevio, orphan]]
    (matrix,) = transfer_matrices(records)
    assert [c.title for c in matrix.columns] == ["stare", "vevio"]
    (row,) = matrix.rows
    cells = [row.cells[c.key] for c in matrix.columns]
    assert (row.own.runs, cells[0].runs, cells[1].runs) == (3, 2, 3)
    want = np.mean([c["dice"] for r in stare for c in r["cases"]])
    assert math.isclose(cells[0].stats.reduction["mean"], want, abs_tol=1e-12)
    text = lb.render(records, plots=False)
    section = text[text.index("## Trained on A → tested on B") :]
    line = next(ln for ln in section.splitlines() if ln.startswith("| unet | dice_ce |"))
    # the own column is the main table's cell for the row
    main = next(ln for ln in text.splitlines() if ln.startswith("| 1 | unet | dice_ce |"))
    assert line.split(" | ")[2] == f"{main.split(' | ')[3].strip('*')} n=3"
    assert "from 5 `evaluation` record(s)" in section and "from its 3 train record(s)" in section
    assert "Not every run tested: unet / dice_ce on stare: 2 of 3 runs." in section
    assert "vevio names its classes background, vessel (background, foreground when trained)" in section
    # the external tests are not rows of the stare / vevio tables; the orphan still is
    before = text[: text.index("## Trained on A")]
    assert "trained on drive, seed" not in before and "from an exported model" in before
    assert "\n## vevio" not in before


def test_a_matrix_cell_interval_stays_inside_dices_bounds() -> None:
    """One run tested on 3 STARE cases with Dice 1, 1, 0.7: Student's t interval 0.9 -+ 0.430 is
    cut at Dice's 1 (uncut 1.330), as in every table."""
    run = _train(0, [0.7, 0.6, 0.8, 0.75])
    (matrix,) = transfer_matrices(
        [Record.from_dict(r) for r in (run, _tested(run, "stare", [1.0, 1.0, 0.7]))]
    )
    (row,) = matrix.rows
    ci = row.cells[matrix.columns[0].key].stats.ci
    half = 4.302652729911275 * math.sqrt(0.03) / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(3)
    assert ci.hi == 1.0 and math.isclose(ci.lo, 0.9 - half, rel_tol=1e-9)
