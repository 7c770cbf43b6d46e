"""The record type: committed records round-trip key for key, constructors write what happened,
prediction files and supersede go through records/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.records import (
    Record,
    load_records,
    prediction_arrays,
    prediction_ref,
    read_prediction,
    record_path,
    supersede,
    write_prediction,
    write_record,
)
from bench.records.store import write_atomic

RESULTS = Path(__file__).resolve().parents[2] / "results"


def _committed() -> list[Path]:
    paths = sorted(p for p in RESULTS.glob("*.json") if "run_id" in json.loads(p.read_text()))
    evaluations = [p for p in paths if p.name.startswith("eval__")]
    return paths[:3] + paths[-2:] + evaluations[:1]


@pytest.mark.parametrize("path", _committed(), ids=lambda p: p.stem[:50])
def test_committed_records_round_trip_key_for_key(path: Path) -> None:
    data = json.loads(path.read_text())
    out = Record.from_dict(data).to_dict()
    assert out == data and list(out) == list(data)


def test_every_committed_record_loads_with_typed_fields() -> None:
    records, problems = load_records(RESULTS)
    assert records and not [p for p in problems if "record" in p[1] and "schema" in p[1]]
    for rec in records:
        assert rec.kind in ("train", "evaluation", "ensemble") and rec.status in ("done", "failed")
        assert rec.config_hash and rec.run_id.endswith(rec.config_hash) == (rec.kind == "train")
        assert rec.done == (rec.status == "done") and isinstance(rec.cases, list)


def test_a_train_record_writes_what_happened_in_the_documented_order() -> None:
    rec = Record.train(
        "r1", config={"seed": 3}, config_hash="abc", attempt=1, device={"host": "h"}, study="s"
    )
    assert list(rec.to_dict()) == [
        "schema", "kind", "run_id", "config_hash", "config", "status", "attempt", "device", "study",
        "started_at", "worker", "git", "versions",
    ]  # fmt: skip
    assert rec.status == "running" and rec.extra == {"study": "s"} and rec.seed == 3
    rec.params, rec.resumed_from_step = 10, None  # did not resume: stated as null
    rec.status, rec.error = "failed", "ValueError: x"
    out = rec.to_dict()
    assert out["resumed_from_step"] is None and out["status"] == "failed"
    assert list(out)[-3:] == ["params", "resumed_from_step", "error"]
    assert "steps" not in out and "cases" not in out and "finished_at" not in out
    assert rec["status"] == "failed" and rec.get("steps") is None and "error" in rec  # mapping view


def test_evaluation_and_ensemble_constructors() -> None:
    ev = Record.evaluation(
        "eval__a", config={"dataset": {"name": "d"}}, config_hash="h", method="m", baseline="human"
    )
    assert ev.status == "done" and list(ev.to_dict())[:8] == [
        "schema", "kind", "run_id", "config_hash", "status", "config", "method", "baseline",
    ]  # fmt: skip
    ens = Record.ensemble("ens__a", config={}, config_hash="h", method="m", members=["a", "b"], seeds=[0, 1])
    assert ens.kind == "ensemble" and ens.members == ["a", "b"] and "members" in ens.to_dict()


def test_prediction_files_are_written_atomically_and_read_back(tmp_path: Path) -> None:
    prob = np.stack([np.full((3, 4), 0.3), np.full((3, 4), 0.7)])
    label = np.ones((3, 4), np.int64)
    path = tmp_path / prediction_ref("run", "c1")
    write_prediction(path, prediction_arrays(label, prob=prob, fov=label > 0))
    got = read_prediction(path)
    assert got["pred"].dtype == np.uint8 and got["pred"].tolist() == label.tolist()
    assert got["prob"].dtype == np.float16 and got["spacing"].tolist() == [1.0, 1.0]
    assert got["fov"].dtype == bool and "image" not in got

    def boom(fh: object) -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError):
        write_atomic(path, boom)
    assert read_prediction(path)["pred"].shape == (3, 4)  # the old file is intact
    assert [p.name for p in path.parent.iterdir()] == ["c1.npz"]  # no temp file left


def test_supersede_moves_the_record_and_its_files_aside(tmp_path: Path) -> None:
    rec = Record.train("run", config={}, config_hash="h", status="done")
    rec.finished_at = "2024-01-02T03:04:05+00:00"
    write_record(tmp_path, rec)
    (tmp_path / "predictions" / "run").mkdir(parents=True)
    (tmp_path / ".work" / "run").mkdir(parents=True)
    dest = supersede(tmp_path, "run")
    assert dest == tmp_path / ".superseded" / "run__2024-01-02T030405+0000.json"
    assert not record_path(tmp_path, "run").exists()
    assert not (tmp_path / "predictions" / "run").exists() and not (tmp_path / ".work" / "run").exists()
    assert supersede(tmp_path, "run") is None  # nothing left to move


def test_supersede_keeps_the_reason_in_the_index(tmp_path: Path) -> None:
    from bench.records.supersede import superseded

    rec = Record.train("run", config={}, config_hash="h", status="done")
    rec.finished_at = "2024-01-02T03:04:05+00:00"
    original = json.dumps(rec.to_dict())
    write_record(tmp_path, rec)
    supersede(tmp_path, "run", "mLSTM fix")
    [entry] = superseded(tmp_path)
    assert entry.run_id == "run" and entry.reason == "mLSTM fix"
    assert entry.path == ".superseded/run__2024-01-02T030405+0000.json"
    assert json.loads((tmp_path / entry.path).read_text()) == json.loads(original)  # never edited


def test_committed_superseded_records_are_listed_and_unchanged() -> None:
    from bench.records.supersede import superseded

    results = Path(__file__).resolve().parents[2] / "results"
    entries = superseded(results)
    assert len(entries) >= 14  # the xLSTM records overwritten in git before the ledger existed
    for e in entries:
        old = json.loads((results / e.path).read_text())
        assert old["run_id"] == e.run_id and e.reason
