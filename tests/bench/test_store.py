import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bench.records import store


def test_atomic_write_leaves_old_file_when_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    store.write_json_atomic(path, {"run_id": "a", "status": "done"})

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(OSError):
        store.write_json_atomic(path, {"run_id": "a", "status": "failed", "big": list(range(10000))})
    assert json.loads(path.read_text())["status"] == "done"


def test_kill_9_never_leaves_a_half_written_record(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {os.getcwd()!r})
        from pathlib import Path
        from bench.records.store import write_json_atomic
        i = 0
        while True:
            write_json_atomic(Path({str(tmp_path)!r}) / f"r{{i % 5}}.json",
                              {{"run_id": str(i), "payload": list(range(20000))}})
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120  # a loaded machine may take long to import
    while not list(tmp_path.glob("r*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # then let it write (and overwrite) for a while
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    records = list(tmp_path.glob("r*.json"))
    assert records, "the writer wrote nothing before it was killed"
    for path in records:
        data = json.loads(path.read_text())  # every visible record parses completely
        assert len(data["payload"]) == 20000
    assert len(store.scan_records(tmp_path)[0]) == len(records)


def test_claims_are_exclusive_and_expire_with_their_process(tmp_path):
    held = store.claim(tmp_path, "run-a")
    assert held is not None
    code = (
        f"import sys; sys.path.insert(0, {os.getcwd()!r}); from bench.records.store import claim; "
        f"print(claim({str(tmp_path)!r}, 'run-a') is None)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"  # another process cannot take it
    held.release()
    # a worker that dies while holding the claim releases it (kill -9)
    hold = (
        f"import sys, time; sys.path.insert(0, {os.getcwd()!r}); from bench.records.store import claim; "
        f"c = claim({str(tmp_path)!r}, 'run-a'); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert store.claim(tmp_path, "run-a") is None
    holder.kill()
    holder.wait()
    again = store.claim(tmp_path, "run-a")
    assert again is not None
    again.release()


def test_scanning_skips_hidden_folders_and_names_non_records(tmp_path):
    store.write_json_atomic(tmp_path / "a.json", {"run_id": "a"})
    store.write_json_atomic(tmp_path / ".superseded" / "b.json", {"run_id": "b"})
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"x": 1}))
    records, problems = store.load_records(tmp_path)
    assert [r.run_id for r in records] == ["a"]
    assert sorted(p.name for p, _ in problems) == ["junk.json", "other.json"]
    assert store.is_done(tmp_path, "a") is False
    assert store.run_state(tmp_path, "a") == "failed" and store.run_state(tmp_path, "b") == "to run"


def test_a_record_with_a_null_structure_is_left_out_by_name_not_raised(tmp_path):
    store.write_json_atomic(tmp_path / "good.json", {"run_id": "good", "status": "done", "cases": []})
    store.write_json_atomic(tmp_path / "null.json", {"run_id": "n", "status": "done", "cases": None})
    store.write_json_atomic(tmp_path / "cfg.json", {"run_id": "c", "status": "done", "config": [1]})
    store.write_json_atomic(tmp_path / "row.json", {"run_id": "r", "status": "done", "cases": [3]})
    records, problems = store.load_records(tmp_path)
    assert [r.run_id for r in records] == ["good"]
    why = {p.name: reason for p, reason in problems}
    assert why["null.json"] == "field 'cases' is NoneType, not a JSON array"
    assert why["cfg.json"] == "field 'config' is list, not a JSON object"
    assert why["row.json"] == "field 'cases' holds an entry that is not a JSON object"


def test_kept_models_and_exports_beside_the_records_are_not_records(tmp_path):
    """``models/<run_id>/config.json`` names its run (for predict) but is not a record."""
    import json

    from bench.records.store import load_records

    rec = {"schema": 3, "kind": "train", "run_id": "r1", "status": "done", "cases": []}
    (tmp_path / "r1.json").write_text(json.dumps(rec))
    (tmp_path / "models" / "r1").mkdir(parents=True)
    (tmp_path / "models" / "r1" / "config.json").write_text(json.dumps({"run_id": "r1", "config": {}}))
    (tmp_path / "leaderboard.json").write_text(json.dumps([{"table": "x"}]))
    records, problems = load_records(tmp_path)
    assert [r.run_id for r in records] == ["r1"] and problems == []
