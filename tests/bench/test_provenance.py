"""git_state: the dirty flag is about the code, not about the records a sweep writes."""

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
