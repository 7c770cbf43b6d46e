"""``segbench evaluate --run RUN --dataset OTHER``: a trained run's kept model predicts another
dataset's split and is scored in one step; its record names the training run and its data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import sweep_from_dict
from bench.records import load_records
from bench.run import run_sweep
from tests.conftest import tiny_sweep_dict


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    results = tmp_path_factory.mktemp("evaluate-run")
    (record,) = run_sweep(sweep_from_dict(tiny_sweep_dict()), results, progress=False)
    assert record.done, record.error
    return results, record.run_id, record.config


def test_scoring_a_run_on_its_own_test_split_gives_its_recorded_dice(trained, capsys) -> None:
    results, run_id, config = trained
    kwargs = [f"--dataset-arg={k}={json.dumps(v)}" for k, v in config["dataset"]["kwargs"].items()]
    argv = ["evaluate", "--run", run_id, "--dataset", "synthetic_vessels", *kwargs, "--results", str(results)]
    assert main([*argv, "--quiet", "--betti-patch", "32"]) == 0
    records = {r.run_id: r for r in load_records(results)[0]}
    (ev,) = [r for r in records.values() if r.kind == "evaluation"]
    assert ev.config["source"]["run"] == run_id and ev.config["source"]["trained_on"] == "synthetic_vessels"
    assert ev.method == "unet / dice_ce (trained on synthetic_vessels, seed 0)"
    want = {c["case_id"]: c["dice"] for c in records[run_id].cases}
    got = {c["case_id"]: c["dice"] for c in ev.cases}
    assert got.keys() == want.keys()
    assert all(math.isclose(got[k], want[k], rel_tol=0, abs_tol=1e-12) for k in want)


def test_other_data_of_another_size_is_predicted_and_scored(trained, capsys) -> None:
    results, run_id, _ = trained
    argv = ["evaluate", "--run", run_id, "--dataset", "synthetic_vessels", "--dataset-arg=size=[48, 48]"]
    assert main([*argv, "--dataset-arg=num_test=2", "--results", str(results), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "trained on synthetic_vessels, seed 0) on synthetic_vessels: 2 case(s)" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--run needs --dataset NAME"),
        (["--dataset", "synthetic_vessels", "--pred", "x"], "--run predicts itself: do not pass --pred"),
        (
            ["--dataset", "synthetic_vessels_3d"],
            "--dataset synthetic_vessels_3d: 3D with 1 channel(s); the model is 2D",
        ),
    ],
)
def test_bad_combinations_are_one_line(trained, capsys, extra, message) -> None:
    results, run_id, _ = trained
    assert main(["evaluate", "--run", run_id, "--results", str(results), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
