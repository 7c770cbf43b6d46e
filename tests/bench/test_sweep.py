"""Optuna studies: search space -> config, pruning, SQLite storage, multi-objective, best-trial record."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from bench.config import ConfigError, sweep_from_dict
from bench.records import load_records
from bench.tune.search import FINISHED, Objective, optimize, over_budget, score_on_val, study_name, tune_main
from bench.tune.space import apply_params, make_pruner, make_sampler, set_loss_weight, suggest
from bench.tune.storage import make_storage
from tests.conftest import tiny_sweep_dict

SPACE = {
    "optim.lr": {"type": "float", "low": "1e-4", "high": "1e-2", "log": True},
    "model.kwargs.channels": {"type": "categorical", "choices": [[4, 8, 16], [8, 8, 16]]},
}


def _tune_args(sweep: dict, tmp_path: Path, **kw) -> argparse.Namespace:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    base = {"sweep": str(path), "results": str(tmp_path / "results"), "storage": None, "n_trials": None}
    return argparse.Namespace(**{**base, "override": [], "quiet": True, **kw})


def test_apply_params_sets_dotted_paths_and_loss_weights():
    run = sweep_from_dict(tiny_sweep_dict(losses=["dice+0.5*cldice"])).expand()[0]
    new = apply_params(
        run,
        {
            "optim.lr": 0.02,
            "data.batch_size": 4,
            "model.kwargs.channels": [8, 16, 32],
            "loss.weights.cldice": 0.25,
        },
    )
    assert new.optim.lr == 0.02 and new.data.batch_size == 4
    assert new.model.kwargs["channels"] == [8, 16, 32]
    assert new.loss.name == "dice+0.25*cldice"
    assert new.config_hash != run.config_hash and run.optim.lr != 0.02  # the base is untouched
    with pytest.raises(ConfigError, match="optim.lrr"):
        apply_params(run, {"optim.lrr": 0.1})
    with pytest.raises(ConfigError, match="no term 'mip'"):
        set_loss_weight("dice+0.5*cldice", "mip", 1.0)


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"sampler": "cmaes"}, "tune.sampler"),
        ({"space": {"optim.lr": {"type": "float", "low": 0, "high": 1, "log": True}}}, "log=true"),
        ({"space": {"optim.lr": {"type": "float", "low": "x", "high": 1}}}, "tune.space.optim.lr.low"),
        ({"space": {"lr": {"type": "float", "low": 0.1, "high": 1}}}, "must start with"),
        ({"sampler": "grid", "space": {"optim.lr": {"type": "float", "low": 0.1, "high": 1}}}, "grid"),
        ({"objectives": [{"metric": "val_dice", "direction": "up"}]}, "direction"),
    ],
)
def test_bad_tune_sections_name_the_field(tune, message):
    with pytest.raises(ConfigError, match=message):
        sweep_from_dict(tiny_sweep_dict(tune=tune))


def test_budget_counts_only_trials_numbered_before():
    study = optuna.create_study()
    for _ in range(3):
        study.ask()  # RUNNING trials 0, 1, 2
    assert not over_budget(study, 2, n_trials=3)  # two trials before it: it may run
    assert over_budget(study, 3, n_trials=3)  # three before it: over budget


def test_pruning_callback_prunes_a_worse_trial(tmp_path):
    """A completed trial with perfect intermediate scores makes the median pruner stop ours."""
    run = sweep_from_dict(tiny_sweep_dict()).expand()[0]
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    perfect = {step: 1.0 for step in range(10)}
    study.add_trial(optuna.trial.create_trial(value=1.0, intermediate_values=perfect))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        score_on_val(run, tmp_path / "trial", ["val_dice"], trial=trial)
    assert 0 in study.trials[1].intermediate_values  # reported at the first validation epoch


def test_tune_runs_a_pruned_study_in_sqlite_and_records_the_best_on_test(tmp_path):
    sweep = tiny_sweep_dict(name="tune3")
    sweep["trainer"]["max_steps"] = 4  # 2 steps per epoch -> 2 validation epochs per trial
    sweep["tune"] = {
        "n_trials": 3,
        "pruner": "median",
        "pruner_kwargs": {"n_startup_trials": 1},
        "space": SPACE,
    }
    args = _tune_args(sweep, tmp_path)
    assert tune_main(args) == 0

    db = tmp_path / "results" / "optuna.db"
    assert db.is_file()
    name = study_name(sweep_from_dict(sweep).expand()[0])
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    assert all(t.intermediate_values for t in finished)  # the pruning callback saw every epoch
    records = load_records(tmp_path / "results")[0]
    assert len(records) == 1
    rec = records[0]
    best = study.best_trial
    assert rec["status"] == "done" and rec["study"] == name and rec["trial"] == best.number
    assert rec["storage"] == f"sqlite:///{db}"
    assert rec["config"]["optim"]["lr"] == pytest.approx(best.params["optim.lr"])
    assert rec["config"]["model"]["kwargs"]["channels"] == json.loads(best.params["model.kwargs.channels"])
    assert rec["val"]["val_dice"] == pytest.approx(best.value)
    assert {c["case_id"] for c in rec["cases"]} == set(rec["split"]["test"])  # test only at the end

    # a second call joins the finished study: no new trials, the best run is already done
    assert tune_main(args) == 0
    assert len(optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials) == 3
    assert len(load_records(tmp_path / "results")[0]) == 1


def test_multi_objective_study_with_a_validation_betti_objective(tmp_path):
    sweep = tiny_sweep_dict(name="tune_mo")
    sweep["tune"] = {
        "n_trials": 2,
        "sampler": "random",
        "evaluate_best": False,
        "objectives": [
            {"metric": "val_dice", "direction": "maximize"},
            {"metric": "val_betti1_err", "direction": "minimize"},
        ],
        "space": {"optim.lr": SPACE["optim.lr"]},
    }
    args = _tune_args(sweep, tmp_path, storage=f"sqlite:///{tmp_path / 'mo.db'}")
    assert tune_main(args) == 0
    name = study_name(sweep_from_dict(sweep).expand()[0])
    study = optuna.load_study(study_name=name, storage=args.storage)
    assert len(study.directions) == 2
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2 and all(len(t.values) == 2 for t in done)
    assert all(t.values[1] == t.user_attrs["val"]["val_betti1_err"] for t in done)
    assert study.best_trials  # a Pareto front
    assert not (tmp_path / "results" / "optuna.db").exists()  # --storage was used
    assert not load_records(tmp_path / "results")[0]  # evaluate_best: false


def test_a_dead_workers_trial_is_failed_retried_and_not_counted(tmp_path):
    """A RUNNING trial whose heartbeat stopped is failed, re-run once, and the study ends at n_trials."""
    tune = {"n_trials": 2, "heartbeat_interval": 1, "grace_period": 2, "pruner": "none"}
    sweep = sweep_from_dict(tiny_sweep_dict(tune={**tune, "space": {"optim.lr": SPACE["optim.lr"]}}))
    storage = make_storage(f"sqlite:///{tmp_path / 'dead.db'}", sweep.tune)
    study = optuna.create_study(storage=storage, study_name="dead", direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    dead = study.ask({"optim.lr": lr})  # a worker that beat once, then died mid-trial
    storage.record_heartbeat(dead._trial_id)
    time.sleep(3)
    objective = Objective(sweep.expand()[0], sweep.tune, tmp_path / "work", n_trials=2)
    optimize(study, objective, 2, max_failures=2)

    assert study.trials[0].state == TrialState.FAIL
    assert sum(t.state in FINISHED for t in study.trials) == 2
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params["optim.lr"] == dead.params["optim.lr"]


def test_grid_sampler_visits_every_combination_including_list_choices():
    space = {
        "data.batch_size": {"type": "categorical", "choices": [2, 4]},
        "model.kwargs.channels": SPACE["model.kwargs.channels"],
    }
    tune = sweep_from_dict(tiny_sweep_dict(tune={"sampler": "grid", "space": space})).tune
    study = optuna.create_study(sampler=make_sampler(tune))
    seen = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(tuple(json.dumps(suggest(trial, k, s)) for k, s in tune.space.items()))
        return 0.0

    study.optimize(objective, n_trials=4)
    assert len(set(seen)) == 4 and ("4", "[8, 8, 16]") in seen


@pytest.mark.parametrize(
    ("pruner", "objectives", "expected"),
    [
        ("median", 1, optuna.pruners.MedianPruner),
        ("successive_halving", 1, optuna.pruners.SuccessiveHalvingPruner),
        ("hyperband", 1, optuna.pruners.HyperbandPruner),
        ("none", 1, optuna.pruners.NopPruner),
        ("median", 2, optuna.pruners.NopPruner),  # Optuna cannot prune multi-objective studies
    ],
)
def test_pruner_choice(pruner, objectives, expected):
    objs = [{"metric": "val_dice"}, {"metric": "val_betti1_err", "direction": "minimize"}][:objectives]
    tune = sweep_from_dict(tiny_sweep_dict(tune={"pruner": pruner, "objectives": objs})).tune
    assert type(make_pruner(tune)) is expected
