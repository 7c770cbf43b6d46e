import subprocess
import sys

import pytest
import yaml

from bench.cli import build_parser, main
from bench.config import DEFAULT_SWEEP
from tests.conftest import tiny_sweep_dict


def test_print_default_prints_the_packaged_sweep(capsys):
    assert main(["run", "--print-default"]) == 0
    assert capsys.readouterr().out == DEFAULT_SWEEP.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "missing.yaml"], "missing.yaml: no such sweep file"),
        (["run", "-o", "trainer.max_steps=ten"], "trainer.max_steps: expected int, got 'ten'"),
        (["run", "-o", "models=[unett]"], "unknown model 'unett'; known: "),
        (["run", "-o", "losses=[dice+nope]"], "unknown loss 'nope'; known: "),
        (["run", "-o", "datasets=[nope]"], "unknown dataset 'nope'; known: "),
    ],
)
def test_bad_input_gives_one_clear_line(capsys, argv, message, tmp_path):
    assert main([*argv, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("segbench run: error:")


def test_listings(capsys):
    assert main(["losses"]) == 0
    out = capsys.readouterr().out
    assert "dice_ce" in out and "cross-entropy" in out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "synthetic_vessels_3d" in out and "embedded" in out


def test_models_listing_shows_family_dims_and_params(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("unet "))
    assert "cnn" in line and "2D/3D" in line and " M" in line


def test_run_then_leaderboard_through_the_console_script(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep_dict(losses=["dice", "dice_ce"])))
    board = tmp_path / "leaderboard.md"
    cmd = [
        sys.executable,
        "-m",
        "bench.cli",
        "run",
        str(sweep),
        "--results",
        str(tmp_path / "r"),
        "--leaderboard",
        str(board),
        "--quiet",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 run(s) executed, 0 failed" in out.stdout
    rows = [x for x in board.read_text().splitlines() if x.startswith("| unet |")]
    assert len(rows) == 2
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert "all 2 run(s) of sweep 'tiny' are done already" in again.stdout
    assert "--force" in again.stdout


def test_every_command_comes_from_the_one_registry():
    from bench.cli.registry import COMMANDS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == list(COMMANDS)
    expected = {"run", "leaderboard", "evaluate", "ensemble", "status", "models", "losses", "datasets"}
    expected |= {"tune", "bench", "predict", "export", "cache", "explain", "uncertainty", "multirater"}
    assert expected == set(COMMANDS)


def test_a_command_module_that_fails_to_import_stops_the_command_line(tmp_path):
    # a command whose module cannot import must not disappear from `segbench --help`
    broken = tmp_path / "broken_cmd.py"
    broken.write_text("import a_module_that_does_not_exist  # noqa\n")
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import bench.cli.app as cli\n"
        "cli.COMMAND_MODULES = (*cli.COMMAND_MODULES, 'broken_cmd')\n"
        "sys.argv = ['segbench', '--help']\n"
        "cli.entry()\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode != 0
    assert "a_module_that_does_not_exist" in out.stderr


def test_console_entry_freezes_the_heap_for_the_exit(tmp_path):
    probe = (
        "import atexit, gc, sys\n"
        "import bench.cli.app as cli\n"
        "atexit.register(lambda: print('exit', gc.get_freeze_count(), flush=True))\n"
        "sys.argv = ['segbench', 'losses']\n"
        "cli.entry()\n"
    )
    ok = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert int(ok.stdout.split("exit ")[1]) > 100_000  # torch's and the models' objects
    assert "dice_ce" in ok.stdout


def test_leaderboard_goes_beside_its_records_not_into_the_current_folder(tmp_path, monkeypatch):
    """``segbench run --results DIR`` renders DIR/../leaderboard.md; the working folder is untouched."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep_dict()))
    results = tmp_path / "exp" / "results"
    assert main(["run", str(sweep), "--results", str(results), "--quiet"]) == 0
    assert (results / "leaderboard.md").is_file()  # inside its results folder
    assert not (tmp_path / "exp" / "leaderboard.md").exists()
    assert list(work.iterdir()) == []
    # a mistyped --results never replaces an existing leaderboard
    board = results / "leaderboard.md"
    text = board.read_text()
    assert main(["leaderboard", "--results", str(tmp_path / "exp" / "reslts")]) == 2
    assert main(["leaderboard", "--results", str(tmp_path / "emptydir"), "--output", str(board)]) == 2
    (tmp_path / "emptydir").mkdir()
    assert main(["leaderboard", "--results", str(tmp_path / "emptydir"), "--output", str(board)]) == 2
    assert board.read_text() == text
    assert main(["leaderboard", "--results", str(results)]) == 0  # default: beside the records
    assert board.is_file()


def test_a_render_never_overwrites_a_sweep_file_or_a_record(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(tiny_sweep_dict()))
    record = tmp_path / "r" / "run.json"
    record.parent.mkdir()
    record.write_text('{"schema": 2, "kind": "train", "run_id": "run", "status": "done", "cases": []}')
    before = (sweep.read_text(), record.read_text())
    assert main(["run", str(sweep), "--results", str(tmp_path / "r"), "--leaderboard", str(sweep)]) == 2
    assert "is a sweep file or a run record" in capsys.readouterr().err
    args = ["leaderboard", "--results", str(tmp_path / "r"), "--format", "json", "--output", str(record)]
    assert main(args) == 2
    assert "is a sweep file or a run record" in capsys.readouterr().err
    assert (sweep.read_text(), record.read_text()) == before
