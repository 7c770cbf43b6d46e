"""Provenance: git_state's dirty flag is about the code, not about the records a sweep writes;
device_info states the cores the process may use and the threads torch computes with."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench.records.provenance import git_state


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "results").mkdir()
    (repo / "bench" / "code.py").write_text("x = 1\n")
    (repo / "results" / "run.json").write_text("{}\n")
    (repo / "leaderboard.md").write_text("table\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return repo


def test_replaced_records_and_leaderboard_leave_the_tree_clean(tmp_path):
    repo = _repo(tmp_path)
    (repo / "results" / "run.json").write_text('{"status": "done"}\n')  # a re-run replaced a record
    (repo / "results" / "new.json").write_text("{}\n")
    (repo / "leaderboard.md").write_text("new table\n")
    state = git_state(repo / "bench")
    assert state["dirty"] is False and len(state["commit"]) == 40


def test_a_changed_source_file_is_dirty(tmp_path):
    repo = _repo(tmp_path)
    (repo / "bench" / "code.py").write_text("x = 2\n")
    assert git_state(repo / "bench")["dirty"] is True
    assert git_state(repo)["dirty"] is True  # from the top too


def test_outside_a_checkout_nothing_is_claimed(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None}


def test_device_info_states_the_usable_cores_and_the_threads_set(monkeypatch):
    import os

    import torch

    from bench.records.provenance import device_info

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        info = device_info("cpu")
    finally:
        torch.set_num_threads(before)
    assert info["cpu_count"] == 3 and info["torch_threads"] == 2
