"""Two ``segbench tune`` workers share one study on a real PostgreSQL server (``.ci/postgres.sh``).

Skipped only when ``SEGBENCH_PG_URL`` is unset outside CI; with ``CI`` set it must be there, and a
set but unreachable URL fails the test.
"""

from __future__ import annotations

import os
import uuid

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from bench.config import sweep_from_dict
from bench.records import load_records
from bench.tune.search import study_name
from bench.tune.storage import storage_url
from tests.conftest import run_cli_workers, tiny_sweep_dict

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get("SEGBENCH_PG_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI is set but SEGBENCH_PG_URL is not: source .ci/postgres.sh first")
        pytest.skip("SEGBENCH_PG_URL is not set (start a server with `source .ci/postgres.sh`)")
    import sqlalchemy as sa

    try:
        with sa.create_engine(storage_url(url)).connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as e:  # noqa: BLE001 - any connection error fails the test, naming the URL
        pytest.fail(f"SEGBENCH_PG_URL={url} is set but unreachable: {e}")
    return url


def test_two_tune_workers_share_one_study_without_losing_or_duplicating_trials(pg_url, tmp_path):
    n_trials = 4
    sweep = tiny_sweep_dict(name=f"pg_{uuid.uuid4().hex[:8]}")  # a fresh study in a shared database
    sweep["tune"] = {
        "n_trials": n_trials,
        "sampler": "random",
        "pruner": "none",
        "space": {"optim.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    results = tmp_path / "results"
    args = ["tune", str(path), "--results", str(results), "--storage", pg_url, "--quiet"]
    outputs = run_cli_workers(args, n=2)

    name = study_name(sweep_from_dict(sweep).expand()[0])
    study = optuna.load_study(study_name=name, storage=storage_url(pg_url))
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials, [(t.number, t.state) for t in study.trials]
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.user_attrs["run_id"] for t in finished}) == n_trials  # four distinct trials
    assert all(f"study {name}: {n_trials} finished" in out for out in outputs)

    records = load_records(results)[0]  # the best config is tested once, by one worker
    assert len(records) == 1
    assert records[0]["status"] == "done" and records[0]["trial"] == study.best_trial.number
    assert records[0]["storage"].startswith("postgresql") and records[0]["study"] == name
