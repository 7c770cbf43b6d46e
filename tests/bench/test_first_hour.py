"""The first hour of a user: where runs and leaderboards go, errors that tell a bug from a mistake,
`segbench datasets` reading the same data folder as the runs, and the claims tool's checks."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from bench.cli import app
from bench.cli.registry import COMMANDS, Command
from bench.errors import UserError
from bench.records.store import DEFAULT_RESULTS, leaderboard_path

REPO = Path(__file__).resolve().parents[2]


# ---- results folders and their leaderboards -------------------------------------------------


def test_users_runs_default_apart_from_the_reference_records() -> None:
    assert DEFAULT_RESULTS == "runs"
    parser = app.build_parser()
    for cmd in ("run", "leaderboard", "status", "ensemble", "evaluate", "tune"):
        args = parser.parse_args([cmd] if cmd != "evaluate" else [cmd, "--name", "x"])
        assert args.results == "runs", cmd
    assert (REPO / "results" / ".leaderboard").read_text().strip() == "../leaderboard.md"
    assert leaderboard_path(REPO / "results") == (REPO / "leaderboard.md").resolve()


def test_each_results_folder_has_its_own_leaderboard(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert leaderboard_path(a) == a / "leaderboard.md"
    assert leaderboard_path(a) != leaderboard_path(b)
    a.mkdir()
    (a / ".leaderboard").write_text("../board-a.md\n")
    assert leaderboard_path(a) == (tmp_path / "board-a.md").resolve()
    for bad in ("", "../../x.md", "/etc/passwd", "../x.txt"):
        (a / ".leaderboard").write_text(bad)
        with pytest.raises(ValueError, match=r"\.leaderboard: must name a \.md file"):
            leaderboard_path(a)


def test_leaderboard_inside_a_results_folder_about_to_be_created(tmp_path: Path) -> None:
    """`--leaderboard out/lb.md` with `--results out`: the run creates out/, so it is accepted."""
    from bench.cli.common import leaderboard_file

    out = tmp_path / "out"
    assert leaderboard_file(str(out / "lb.md"), out) == out / "lb.md"
    with pytest.raises(UserError, match="does not exist"):
        leaderboard_file(str(tmp_path / "elsewhere" / "lb.md"), out)


# ---- a mistake is one line; a bug is a traceback, saved --------------------------------------


@pytest.fixture
def fake_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Register `segbench boom`, whose handler raises what the test sets."""
    monkeypatch.setenv("SEGBENCH_CRASH_DIR", str(tmp_path / "crashes"))
    box: dict[str, BaseException] = {}

    def handler(args: argparse.Namespace) -> int:
        raise box["error"]

    app.build_parser()  # the real commands first
    monkeypatch.setitem(COMMANDS, "boom", Command("boom", "raises", lambda p: None, handler))
    return box


@pytest.mark.parametrize(
    "error",
    [KeyError("lr"), ValueError("operands could not be broadcast"), TypeError("x"), IndexError(3)],
    ids=["KeyError", "ValueError", "TypeError", "IndexError"],
)
def test_a_bug_is_an_internal_error_with_its_traceback_saved(fake_command, capsys, tmp_path, error) -> None:
    fake_command["error"] = error
    assert app.main(["boom"]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("segbench boom: internal error (a bug in segbench, not in your input): ")
    (saved,) = (tmp_path / "crashes").iterdir()
    assert str(saved) in last
    text = saved.read_text()
    assert text.startswith("segbench boom\n") and "Traceback" in text and type(error).__name__ in text


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (UserError("sweep.yaml: models[0]: unknown"), "segbench boom: error: sweep.yaml: models[0]: unknown"),
        (
            FileNotFoundError(2, "No such file or directory", "/data/x.png"),
            "segbench boom: error: /data/x.png: No such file or directory",
        ),
    ],
    ids=["UserError", "OSError-with-file"],
)
def test_a_mistake_is_one_line_and_debug_shows_its_traceback(fake_command, capsys, error, line) -> None:
    fake_command["error"] = error
    assert app.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == line
    assert app.main(["--debug", "boom"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().endswith(line)


def test_segbench_error_classes_are_mistakes_plain_ones_are_bugs() -> None:
    from bench.config import ConfigError
    from datamodules.readers import CaseLoadError

    assert app.is_user_error(ConfigError("x")) and app.is_user_error(CaseLoadError("x"))
    assert not app.is_user_error(ValueError("x")) and not app.is_user_error(KeyError("x"))
    assert not app.is_user_error(OSError("no file named"))


def test_argparse_mistakes_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        app.main(["leaderboard", "--format", "xlsx"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice: 'xlsx'" in err


# ---- datasets: one data folder for runs and listings -----------------------------------------


def test_datasets_reads_the_same_data_folder_as_the_runs(tmp_path, monkeypatch, capsys) -> None:
    from datamodules.base import data_folder
    from datamodules.chase_db1 import ChaseDb1DataModule

    monkeypatch.delenv("SEGBENCH_DATA", raising=False)
    monkeypatch.setenv("SEGBENCH_SHARED_DATA", str(tmp_path))
    assert data_folder() == tmp_path
    assert ChaseDb1DataModule.default_root() == tmp_path / "CHASE_DB1"
    monkeypatch.setenv("SEGBENCH_DATA", str(tmp_path / "mine"))
    assert data_folder() == tmp_path / "mine"  # SEGBENCH_DATA wins
    monkeypatch.delenv("SEGBENCH_DATA")
    assert app.main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert f"looked for each release folder under {tmp_path}" in out
    assert "chase_db1" in out and "synthetic_vessels" in out


def test_datasets_says_local_yes_for_the_shared_data(monkeypatch, capsys) -> None:
    shared = os.environ.get("SEGBENCH_SHARED_DATA")
    root = Path(shared) if shared else REPO.parent / "shared" / "data"
    if not (root / "CHASE_DB1").is_dir():
        if shared:
            pytest.fail(f"{root}/CHASE_DB1 is missing")
        pytest.skip("shared data absent")
    monkeypatch.delenv("SEGBENCH_DATA", raising=False)
    monkeypatch.setenv("SEGBENCH_SHARED_DATA", str(root))
    assert app.main(["datasets"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("chase_db1 "))
    assert " yes " in line


def test_release_archive_in_root_counts_as_available(tmp_path) -> None:
    from datamodules.args import DataArgumentError
    from datamodules.chase_db1 import ChaseDb1DataModule

    with pytest.raises(DataArgumentError, match="does not exist"):
        ChaseDb1DataModule.check_available(tmp_path / "nope")
    (tmp_path / ChaseDb1DataModule.resources[0].filename).write_bytes(b"zip")
    ChaseDb1DataModule.check_available(tmp_path)  # verified and extracted when the run starts


# ---- the claims tool ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--dataset", "synthetic_vesels"],
            "--dataset 'synthetic_vesels': no finished run; the records hold",
        ),
        (
            ["--other", "dice+cldce"],
            "--other 'dice+cldce': no finished run on synthetic_vessels; its losses are",
        ),
        (["--base", "dice", "--other", "dice"], "--base and --other are both 'dice'"),
        (["--metric", "dicee"], "--metric 'dicee': not a metric"),
    ],
)
def test_claims_rejects_what_the_records_do_not_hold(argv, message, capsys) -> None:
    from bench.leaderboard import claims

    assert claims.main([str(REPO / "results"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_claims_on_a_missing_folder(tmp_path, capsys) -> None:
    from bench.leaderboard import claims

    assert claims.main([str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_ensemble_says_what_a_sweep_needs(tmp_path, capsys) -> None:
    (tmp_path / "r.json").write_text(
        json.dumps(
            {
                "schema": 3,
                "kind": "train",
                "run_id": "r",
                "status": "done",
                "cases": [],
                "seed": 0,
                "config": {
                    "dataset": {"name": "d", "kwargs": {}},
                    "model": {"name": "unet", "kwargs": {}},
                    "loss": {"name": "dice", "kwargs": {}},
                    "seed": 0,
                    "fold": 0,
                },
            }
        )
    )
    assert app.main(["ensemble", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "of 1 row(s), 1 have fewer than 2 done seeds" in err
    assert "seeds: [0, 1, 2]" in err and "save_probabilities: true" in err


# ---- kept weights: said up front when a sweep would keep a lot -------------------------------


def test_kept_weights_estimate_counts_each_runs_float32_parameters(tmp_path, monkeypatch, capsys) -> None:
    import torch
    import yaml

    from bench.cli.common import kept_weights_bytes, warn_kept_weights
    from bench.config import sweep_from_dict
    from bench.run import plan_sweep
    from models.unet import unet  # the builder the registry calls
    from tests.conftest import tiny_sweep_dict

    runs = plan_sweep(sweep_from_dict(tiny_sweep_dict(seeds=[0, 1, 2])))
    net = unet(spatial_dims=2, in_channels=1, out_channels=2, channels=[4, 8, 16])
    params = sum(p.numel() for p in net.parameters() if isinstance(p, torch.Tensor))
    assert kept_weights_bytes(runs) == 3 * 4 * params
    none = plan_sweep(sweep_from_dict(tiny_sweep_dict(seeds=[0, 1], eval={"keep_model": "none"})))
    assert kept_weights_bytes(none) == 0
    monkeypatch.setenv("SEGBENCH_KEEP_WARN_GB", str(1e-9))
    assert warn_kept_weights(runs, tmp_path / "r") == 3 * 4 * params
    err = capsys.readouterr().err
    assert f"keeps about 0.0 GB of model weights under {tmp_path / 'r'}/models/" in err
    assert "`-o eval.keep_model=none` keeps none" in err
    monkeypatch.setenv("SEGBENCH_KEEP_WARN_GB", "2")
    warn_kept_weights(runs, tmp_path / "r")
    assert capsys.readouterr().err == ""
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep_dict()))
    monkeypatch.setenv("SEGBENCH_KEEP_WARN_GB", str(1e-9))
    assert app.main(["run", str(sweep), "--results", str(tmp_path / "r"), "--quiet", "--no-leaderboard"]) == 0
    assert capsys.readouterr().err.count("of model weights under") == 1
