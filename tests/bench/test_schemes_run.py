"""Training schemes and label budgets through the runner: the config axis, its checks, the run ids,
what a record states, and that a run with a label budget never reads an unlabelled case's labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import ConfigError, sweep_from_dict
from bench.records.identity import row_key
from bench.run import plan_sweep, run_sweep
from bench.run.plan import resolve_run
from datamodules.registry import DATASETS, register_dataset
from datamodules.synthetic import SyntheticVesselsDataModule
from tests.conftest import tiny_sweep_dict


def _sweep(**updates):
    data = tiny_sweep_dict(**updates)
    data["datasets"][0]["num_train"] = 6
    return data


def test_schemes_are_an_axis_and_the_supervised_default_keeps_earlier_run_ids() -> None:
    plain = sweep_from_dict(_sweep())
    explicit = sweep_from_dict(_sweep(schemes=["supervised"]))
    assert [r.run_id for r in plain.expand()] == [r.run_id for r in explicit.expand()]
    # the hash of a run without the field (as written before schemes existed) is unchanged
    (run,) = plain.expand()
    before = run.to_dict()
    del before["scheme"]
    before["data"].pop("labelled_fraction")
    from bench.records.identity import hash_config

    assert hash_config(before) == run.config_hash
    assert row_key(before) == row_key(run.to_dict())
    both = sweep_from_dict(_sweep(schemes=["supervised", {"name": "mean_teacher", "weight": 2.0}]))
    runs = both.expand()
    assert [r.scheme.name for r in runs] == ["supervised", "mean_teacher"]
    assert runs[1].scheme.kwargs == {"weight": 2.0}
    assert len({r.run_id for r in runs}) == 2 and row_key(runs[0].to_dict()) != row_key(runs[1].to_dict())


def test_a_dataset_entry_label_budget_is_moved_into_data_so_one_budget_is_one_row() -> None:
    a = _sweep()
    a["datasets"][0]["labelled_fraction"] = 0.5
    b = _sweep(data={**tiny_sweep_dict()["data"], "labelled_fraction": 0.5})
    (ra,) = sweep_from_dict(a).expand()
    (rb,) = sweep_from_dict(b).expand()
    resolved_a, resolved_b = resolve_run(ra), resolve_run(rb)
    assert resolved_a.data.labelled_fraction == 0.5 and "labelled_fraction" not in resolved_a.dataset.kwargs
    assert row_key(resolved_a.to_dict()) == row_key(resolved_b.to_dict())


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ({"schemes": ["no_such_scheme"]}, "unknown scheme 'no_such_scheme'"),
        ({"schemes": [{"name": "mean_teacher", "wieght": 1}]}, "wieght"),
        ({"schemes": ["scribble"]}, "trains with the loss 'partial_ce'"),
        ({"schemes": ["pseudo_label"]}, "set labelled_fraction below 1"),
        ({"schemes": []}, "schemes: must list at least one entry"),
        ({"data": {"labelled_fraction": 0}}, "data.labelled_fraction: must be in (0, 1]"),
    ],
)
def test_bad_schemes_are_one_line_errors_naming_the_field(updates, message) -> None:
    with pytest.raises(ConfigError) as e:
        plan_sweep(sweep_from_dict(_sweep(**updates)))
    text = str(e.value)
    assert message in text and len(text.splitlines()) == 1, text


@pytest.fixture
def guarded_dataset():
    """``guarded_vessels``: synthetic vessels whose ``load_case`` raises for an unlabelled training
    case (a label read there would be a label the run may not use)."""

    class Guarded(SyntheticVesselsDataModule):
        def load_case(self, ref):
            if ref.case_id in getattr(self, "unlabelled", ()):
                raise AssertionError(f"the label of unlabelled case {ref.case_id} was read")
            return super().load_case(ref)

        def load_unlabelled(self, ref):  # the dataset's image-only reader, declared beside load_case
            return super().load_unlabelled(ref)

    register_dataset("guarded_vessels")(Guarded)
    yield "guarded_vessels"
    DATASETS._entries.pop("guarded_vessels", None)


@pytest.mark.parametrize("scheme", ["mean_teacher", "ds6", "pseudo_label"])
def test_a_label_budget_run_never_reads_an_unlabelled_label_and_its_record_says_so(
    tmp_path: Path, guarded_dataset: str, scheme: str
) -> None:
    data = _sweep(schemes=[scheme])
    data["datasets"][0].update(name=guarded_dataset, labelled_fraction=0.34, disk_cache=False)
    sweep = sweep_from_dict(data)
    (record,) = run_sweep(sweep, tmp_path, progress=False)
    assert record.status == "done", record.traceback
    split = record.split
    # 6 training cases, fraction 0.34: round(2.04) = 2 labelled, 4 unlabelled, none of val / test
    assert split["n_labelled"] == 2 and split["n_unlabelled"] == 4
    assert set(split["labelled"]) | set(split["unlabelled"]) == set(split["train"])
    assert not (set(split["unlabelled"]) & (set(split["val"]) | set(split["test"])))
    assert record.config["scheme"] == {"name": scheme, "kwargs": {}}
    assert record.config["data"]["labelled_fraction"] == 0.34
    assert len(record.cases) == len(split["test"])


def test_the_guard_fails_a_run_that_reads_unlabelled_labels(
    tmp_path: Path, guarded_dataset: str, monkeypatch
) -> None:
    """The guard can fail: with the unlabelled path routed back through ``load_case`` the run fails."""
    monkeypatch.setattr(SyntheticVesselsDataModule, "load_unlabelled", lambda self, ref: self.load_case(ref))
    data = _sweep(schemes=["mean_teacher"])
    data["datasets"][0].update(name=guarded_dataset, labelled_fraction=0.34, disk_cache=False)
    (record,) = run_sweep(sweep_from_dict(data), tmp_path, progress=False)
    assert record.status == "failed" and "was read" in (record.error or "")


def test_a_scribble_run_trains_on_partial_labels(tmp_path: Path) -> None:
    sweep = sweep_from_dict(_sweep(schemes=["scribble"], losses=["partial_ce"]))
    (record,) = run_sweep(sweep, tmp_path, progress=False)
    assert record.status == "done", record.traceback
    assert record.split["train_labels"] == "scribble"
    assert record.config["scheme"]["name"] == "scribble" and record.config["loss"]["name"] == "partial_ce"


@pytest.mark.parametrize(
    ("sweep", "n_runs"),
    [("bench/sweeps/semi_chase_db1.yaml", 27), ("bench/sweeps/semi_msd_hippocampus.yaml", 27)],
)
def test_the_shipped_label_budget_sweeps_plan_every_run(sweep: str, n_runs: int) -> None:
    from bench.config import load_sweep

    runs = plan_sweep(load_sweep(Path(__file__).parents[2] / sweep))
    assert len(runs) == n_runs
    resolved = [resolve_run(r) for r in runs]
    cells = {(r.data.labelled_fraction, r.scheme.name) for r in resolved}
    assert cells == {(f, s) for f in (0.1, 0.25, 1.0) for s in ("supervised", "mean_teacher", "ds6")}
    assert len({r.run_id for r in runs}) == n_runs


@pytest.mark.parametrize(
    "sweep", sorted(p.name for p in (Path(__file__).parents[2] / "bench" / "sweeps").glob("*.yaml"))
)
def test_every_shipped_sweep_loads_and_plans(sweep: str) -> None:
    """Each sweep file of bench/sweeps loads, plans into distinct runs and resolves every run's
    config (an unknown model option, preset or scheme would stop here, not in a week-long sweep)."""
    from bench.config import load_sweep

    runs = plan_sweep(load_sweep(Path(__file__).parents[2] / "bench" / "sweeps" / sweep))
    assert runs and len({r.run_id for r in runs}) == len(runs)
    for run in runs:
        resolve_run(run)
