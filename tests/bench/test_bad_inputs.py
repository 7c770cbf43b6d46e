"""Every bad input ends in one line naming the file or field, exit code 2, before anything runs,
and nothing that exists is touched (records, leaderboard). One row per input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bench.cli import main

_RECORD = {"schema": 2, "kind": "train", "run_id": "existing", "status": "done", "cases": []}

# (id, argv with {tmp}, {sweep}, {results} placeholders, expected exit code, message fragment)
ROWS: list[tuple[str, list[str], int, str]] = [
    ("missing-sweep", ["run", "{tmp}/missing.yaml"], 2, "missing.yaml: no such sweep file"),
    ("sweep-is-dir", ["run", "{tmp}"], 2, "is a directory, not a sweep file"),
    ("empty-sweep", ["run", "{tmp}/empty.yaml"], 2, "empty.yaml: the sweep file is empty"),
    ("binary-sweep", ["run", "{tmp}/binary.yaml"], 2, "binary.yaml: a binary file"),
    ("list-sweep", ["run", "{tmp}/list.yaml"], 2, "list.yaml: the top level is a list"),
    ("bad-yaml", ["run", "{tmp}/broken.yaml"], 2, "broken.yaml: not valid YAML"),
    ("wrong-type", ["run", "-o", "trainer.max_steps=ten"], 2, "trainer.max_steps: expected int, got 'ten'"),
    ("typo-field", ["run", "-o", "trainer.max_stepz=5"], 2, "trainer.max_stepz: unknown field (did you mean 'max_steps'?)"),
    ("no-budget", ["run", "-o", "trainer.max_steps=-1"], 2, "trainer.max_steps: -1 (no step limit) needs max_epochs"),
    ("zero-steps", ["run", "-o", "trainer.max_steps=0"], 2, "trainer.max_steps: must be >= 1"),
    ("samples", ["run", "-o", "data.samples_per_epoch=0"], 2, "data.samples_per_epoch: must be >= 1"),
    ("patch-zero", ["run", "-o", "data.patch_size=[0,32]"], 2, "data.patch_size: must list 2 or 3 sizes, each >= 1"),
    ("patch-dims", ["run", "-o", "data.patch_size=[32,32,32]"], 2, "data.patch_size: [32, 32, 32] has 3 entries but dataset 'synthetic_vessels' is 2D"),
    ("overlap", ["run", "-o", "eval.sw_overlap=1"], 2, "eval.sw_overlap: must be in [0, 1)"),
    ("betti-patch", ["run", "-o", "eval.betti_patch=0"], 2, "eval.betti_patch: must be >= 1"),
    ("warmup", ["run", "-o", "optim.warmup_steps=-1"], 2, "optim.warmup_steps: must be >= 0"),
    ("fg-oversample", ["run", "-o", "data.fg_oversample=1.5"], 2, "data.fg_oversample: must be in [0, 1]"),
    ("folds", ["run", "-o", "data.num_folds=0"], 2, "data.num_folds: must be >= 1"),
    ("fold-range", ["run", "-o", "folds=[7]"], 2, "folds[0]: must be in [0, data.num_folds=5)"),
    ("seed", ["run", "-o", "seeds=[-1]"], 2, "seeds[0]: must be >= 0"),
    ("loss-weight", ["run", "-o", "losses=[dice+0*cldice]"], 2, "the weight of 'cldice' must be finite and > 0"),
    ("lr-nan", ["run", "-o", "optim.lr=.nan"], 2, "optim.lr: must be finite and > 0"),
    ("lr-inf", ["run", "-o", "optim.lr=.inf"], 2, "optim.lr: must be finite and > 0"),
    ("weight-decay", ["run", "-o", "optim.weight_decay=-0.1"], 2, "optim.weight_decay: must be finite and >= 0"),
    ("workers", ["run", "-o", "data.num_workers=-1"], 2, "data.num_workers: must be >= 0"),
    ("precision", ["run", "-o", "trainer.precision=half"], 2, "trainer.precision: 'half' is not one of"),
    ("accelerator", ["run", "-o", "trainer.accelerator=tpu"], 2, "trainer.accelerator: 'tpu' is not one of"),
    ("optimizer", ["run", "-o", "optim.optimizer=adamx"], 2, "optim.optimizer: 'adamx' is not one of"),
    ("mip-on-2d", ["run", "-o", "losses=[dice_ce+mip]"], 2, "'dice_ce+mip' is not defined for 2D data"),
    ("model-kwarg", ["run", "-o", "models=[{name: unet, chanels: [4, 8]}]"], 2, "model 'unet' has no option 'chanels'; accepted: channels"),
    ("model-reserved", ["run", "-o", "models=[{name: unet, spatial_dims: 3}]"], 2, "'spatial_dims' is set by segbench"),
    ("loss-kwarg", ["run", "-o", "losses=[{name: dice_ce, lambda_dicee: 1}]"], 2, "losses: 'dice_ce'"),
    ("dataset-kwarg", ["run", "-o", "datasets=[{name: synthetic_vessels, sizee: [64, 64]}]"], 2, "synthetic_vessels: unknown argument 'sizee'"),
    ("unknown-model", ["run", "-o", "models=[unett]"], 2, "unknown model 'unett'; known: "),
    ("unknown-loss", ["run", "-o", "losses=[dice+nope]"], 2, "unknown loss 'nope'; known: "),
    ("unknown-dataset", ["run", "-o", "datasets=[nope]"], 2, "unknown dataset 'nope'; known: "),
    ("override-syntax", ["run", "-o", "trainer.max_steps"], 2, "expected key.path=value"),
    ("model-dims", ["run", "-o", "models=[hybridgnet]", "-o", "datasets=[synthetic_vessels_3d]",
                    "-o", "data.patch_size=null"], 2, "'hybridgnet' supports 2D"),
    ("results-is-file", ["run", "--results", "{tmp}/empty.yaml"], 2, "--results {tmp}/empty.yaml: is a file"),
    ("leaderboard-dir", ["run", "--leaderboard", "{tmp}"], 2, "is a folder; give the file to write"),
    ("lb-results-missing", ["leaderboard", "--results", "{tmp}/nope"], 2, "--results {tmp}/nope: no such folder"),
    ("lb-results-file", ["leaderboard", "--results", "{tmp}/empty.yaml"], 2, "is a file, not a folder of records"),
    ("lb-output-dir", ["leaderboard", "--results", "{results}", "--output", "{tmp}"], 2, "is a folder"),
    ("lb-no-records", ["leaderboard", "--results", "{tmp}/emptydir", "--output", "{tmp}/board.md"], 2, "no run record found"),
    ("tune-trials", ["tune", "--n-trials", "0"], 2, "--n-trials: must be >= 1"),
    ("storage-syntax", ["tune", "{tmp}/tune.yaml", "--storage", "notascheme"], 2, "--storage notascheme: not a database URL"),
    ("storage-driver", ["tune", "{tmp}/tune.yaml", "--storage", "mysql://"], 2, "--storage mysql://: no database driver"),
    ("storage-unreachable", ["tune", "{tmp}/tune.yaml", "--storage", "sqlite:////nonexistent/dir/x.db"], 2, "cannot open the study storage"),
    ("tune-no-space", ["tune"], 2, "tune.space is empty"),
]


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "list.yaml").write_text("- unet\n- dice\n")
    (tmp_path / "broken.yaml").write_text("models: [unet\n")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "tune.yaml").write_text(
        "models: [{name: unet, channels: [4, 8]}]\ntrainer: {max_steps: 2}\n"
        "tune: {n_trials: 1, space: {optim.lr: {type: float, low: 1e-4, high: 1e-2, log: true}}}\n"
    )
    results = tmp_path / "results"
    results.mkdir()
    (results / "existing.json").write_text(json.dumps(_RECORD))
    (tmp_path / "leaderboard.md").write_text("# an existing leaderboard\n")
    return {"tmp": tmp_path, "results": results}


@pytest.mark.parametrize(("argv", "code", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_and_touches_nothing(world, capsys, monkeypatch, argv, code, message) -> None:
    tmp, results = world["tmp"], world["results"]
    monkeypatch.chdir(tmp)
    fill = {"tmp": str(tmp), "results": str(results)}
    args = [_fill(a, fill) for a in argv]
    if args[0] in ("run", "tune") and "--results" not in args:
        args += ["--results", str(results)]
    before = _digest(tmp)
    assert main(args) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"segbench {args[0]}: error: "), err
    assert _fill(message, fill) in err, err
    assert "Traceback" not in err
    assert _digest(tmp) == before  # no record, leaderboard or file changed


def test_there_are_at_least_thirty_rows() -> None:
    assert len(ROWS) >= 30


def test_readme_override_example_is_a_number(world) -> None:
    """``-o optim.lr=3e-4`` (the README's own example) is the number 3e-4, as in the YAML file."""
    from bench.config import load_sweep

    assert load_sweep(None, ["optim.lr=3e-4"]).optim.lr == 3e-4
    with pytest.raises(ValueError, match="trainer.max_steps: expected int"):
        load_sweep(None, ["trainer.max_steps=1e3"])  # 1000.0 is a float, not an int
    sweep = world["tmp"] / "s.yaml"
    sweep.write_text("optim: {lr: 3e-4, weight_decay: 1e30}\n")
    loaded = load_sweep(sweep)
    assert loaded.optim.lr == 3e-4 and loaded.optim.weight_decay == 1e30


def test_corrupt_dataset_json_is_one_line_naming_the_file(tmp_path, capsys) -> None:
    root = tmp_path / "Task04_Hippocampus"
    (root / "imagesTr").mkdir(parents=True)
    (root / "dataset.json").write_text('{"training": [')
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        f"datasets: [{{name: msd_hippocampus, root: {root}, download: false}}]\n"
        "models: [{name: unet, channels: [4, 8]}]\ntrainer: {max_steps: 1}\n"
    )
    code = main(["run", str(sweep), "--results", str(tmp_path / "r"), "--dry-run"])
    err = capsys.readouterr().err
    if code == 0:  # the index is read when the run starts: the failed record names the file
        from bench.config import load_sweep
        from bench.run import run_sweep

        (rec,) = run_sweep(load_sweep(sweep), tmp_path / "r", progress=False)
        assert rec["status"] == "failed" and "dataset.json: not a valid MSD dataset.json" in rec["error"]
    else:
        assert "dataset.json: not a valid MSD dataset.json" in err and len(err.strip().splitlines()) == 1
