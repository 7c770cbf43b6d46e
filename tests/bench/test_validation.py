"""Cheap validation by default: every ``val_every_n_steps`` steps and after the last, on the first
``val_max_cases`` validation cases; an explicit epoch cadence wins as before; ``segbench tune`` reads
its objective on every validation case; how often a run validates never changes what it trains."""

from __future__ import annotations

import dataclasses

import pytest

from bench.config import sweep_from_dict
from bench.run import build_run, resolve_run, run_sweep
from bench.run.build import trainer_kwargs
from bench.run.validation import DEFAULT_VAL_CASES
from tests.conftest import tiny_sweep_dict

_SIX_VAL = {"name": "synthetic_vessels", "size": [64, 64], "num_train": 4, "num_val": 6, "num_test": 2}


def _sweep(datasets=None, **trainer):
    sweep = tiny_sweep_dict()
    sweep["trainer"] = {**sweep["trainer"], **trainer}
    if datasets is not None:
        sweep["datasets"] = datasets
    return sweep_from_dict(sweep)


def test_the_trainer_gets_the_step_cadence_unless_the_sweep_sets_one():
    t = _sweep().expand()[0].trainer
    kw = trainer_kwargs(t)
    assert (kw["val_check_interval"], kw["check_val_every_n_epoch"]) == (100, None)
    assert kw["limit_val_batches"] is None  # Lightning's default; 1.0 made it print a line
    for key in ("val_every_n_steps", "val_max_cases", "torch_threads"):
        assert key not in kw
    explicit = trainer_kwargs(dataclasses.replace(t, check_val_every_n_epoch=1))
    assert (explicit["val_check_interval"], explicit["check_val_every_n_epoch"]) == (None, 1)
    interval = trainer_kwargs(dataclasses.replace(t, val_check_interval=2))
    assert (interval["val_check_interval"], interval["check_val_every_n_epoch"]) == (2, 1)  # as before


def test_the_record_states_the_validation_cases_used():
    assert resolve_run(_sweep().expand()[0]).trainer.val_max_cases == DEFAULT_VAL_CASES
    assert resolve_run(_sweep(check_val_every_n_epoch=1).expand()[0]).trainer.val_max_cases == -1
    assert (
        resolve_run(_sweep(check_val_every_n_epoch=1, val_max_cases=2).expand()[0]).trainer.val_max_cases == 2
    )


@pytest.mark.parametrize(
    ("trainer", "steps"),
    [
        ({"max_steps": 6, "val_every_n_steps": 4}, [4, 6]),  # every 4 steps, and after the last
        ({"max_steps": 6, "val_every_n_steps": 3}, [3, 6]),
        ({"max_steps": 6, "check_val_every_n_epoch": 1}, [2, 4, 6]),  # explicit: every 2-step epoch
        ({"max_steps": -1, "max_epochs": 2}, [4]),  # an epoch budget: after the last step too
    ],
)
def test_when_a_run_validates(tmp_path, trainer, steps):
    (record,) = run_sweep(_sweep(**trainer), tmp_path, progress=False)
    assert record.status == "done", record.traceback
    assert [s for s, _ in record.lr_trace] == steps  # lr_trace: [step, lr] at every validation
    # val_trace: [step, val_dice, val_loss] at the same validations, the logged values
    assert [p[0] for p in record.val_trace] == steps
    assert all(0.0 <= p[1] <= 1.0 and p[2] > 0.0 for p in record.val_trace)


def test_the_default_validates_on_the_first_cases_by_id_and_an_explicit_cadence_on_all(tmp_path):
    run = build_run(_sweep([_SIX_VAL]).expand()[0], tmp_path / "a", progress=False)
    every = sorted(run.datamodule.good_case_ids("val"))
    assert len(every) == 6
    assert run.datamodule.val_dataloader().dataset.case_ids == every[:DEFAULT_VAL_CASES]
    assert len(run.datamodule.test_dataloader().dataset) == 2  # the test split is never limited
    run.trainer.fit(run.module, datamodule=run.datamodule)
    assert len(run.module._val_dice) == DEFAULT_VAL_CASES  # the cases of the last validation
    explicit = build_run(
        _sweep([_SIX_VAL], check_val_every_n_epoch=1).expand()[0], tmp_path / "b", progress=False
    )
    assert len(explicit.datamodule.val_dataloader().dataset) == 6
    both = _sweep([_SIX_VAL], check_val_every_n_epoch=1, val_max_cases=2).expand()[0]
    assert (
        build_run(both, tmp_path / "c", progress=False).datamodule.val_dataloader().dataset.case_ids
        == every[:2]
    )


@pytest.mark.parametrize(("val_max_cases", "cases"), [(None, 6), (3, 3)])
def test_tune_validates_on_every_case_unless_the_sweep_says_otherwise(
    tmp_path, monkeypatch, val_max_cases, cases
):
    from bench.tune import search

    built = []

    def build_datamodule(cfg):
        built.append(dm := real(cfg))
        return dm

    real = search.build_datamodule
    monkeypatch.setattr(search, "build_datamodule", build_datamodule)
    run = _sweep([_SIX_VAL], val_max_cases=val_max_cases).expand()[0]
    out = search.score_on_val(run, tmp_path / "trial", ["val_dice"])
    assert "val_dice" in out
    assert len(built[0].val_dataloader().dataset) == cases


def test_how_often_a_run_validates_does_not_change_what_it_trains(tmp_path):
    """prob_unet samples its latent from torch's global RNG while training; validating draws from
    that RNG too (the loader's seed), so without ValidationRNG the test metrics differed."""
    records = []
    for every in (1, 1000):
        sweep = tiny_sweep_dict(models=[{"name": "prob_unet", "features": [4, 8, 16, 32, 64]}])
        sweep["trainer"] = {"max_steps": 6, "check_val_every_n_epoch": every}
        (record,) = run_sweep(sweep_from_dict(sweep), tmp_path / str(every), progress=False)
        assert record.status == "done", record.traceback
        records.append(record)
    often, never = records
    assert len(often.lr_trace) == 3 and never.lr_trace == []
    assert often.run_id != never.run_id  # check_val_every_n_epoch is in the hash, as before
    assert often.cases == never.cases
