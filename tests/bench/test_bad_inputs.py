"""Every bad input ends in one line naming the file or field, exit code 2, before anything runs,
and nothing that exists is touched (records, leaderboard). One row per input."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from bench.cli import main

_RECORD = {"schema": 2, "kind": "train", "run_id": "existing", "status": "done", "cases": []}

# (id, argv with {tmp}, {sweep}, {results} placeholders, expected exit code, message fragment)
# fmt: off
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
    ("tta-rotate", ["run", "-o", "eval.tta=rotate"], 2, "eval.tta: 'rotate' is not one of none, flip"),
    ("postprocess-biggest", ["run", "-o", "eval.postprocess=biggest"], 2, "eval.postprocess: must be none, largest_component or min_size:N with N >= 1"),
    ("postprocess-min-size-0", ["run", "-o", "eval.postprocess=min_size:0"], 2, "eval.postprocess: must be none, largest_component or min_size:N"),
    ("postprocess-min-size-text", ["run", "-o", "eval.postprocess=min_size:big"], 2, "eval.postprocess: must be none, largest_component or min_size:N"),
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
    # YAML that would blow up memory or run code
    ("yaml-bomb", ["run", "{tmp}/bomb.yaml"], 2, "bomb.yaml: not valid YAML: its aliases expand to more than"),
    ("yaml-recursive", ["run", "{tmp}/recursive.yaml"], 2, "recursive.yaml: not valid YAML: an alias refers to a node that contains it"),
    ("yaml-python-tag", ["run", "{tmp}/tag.yaml"], 2, "tag.yaml: not valid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("yaml-deep", ["run", "{tmp}/deep.yaml"], 2, "deep.yaml: not valid YAML: nested too deeply"),
    ("yaml-huge", ["run", "{tmp}/huge.yaml"], 2, "huge.yaml: 2,097,152 bytes; a sweep file is a few KB"),
    ("yaml-latin1", ["run", "{tmp}/latin1.yaml"], 2, "latin1.yaml: not UTF-8 text"),
    ("override-bomb", ["run", "-o", "models=[&a [x, x], [*a, *a]]"], 2, "models"),
    ("override-tag", ["run", "-o", "optim.lr=!!python/name:os.system"], 2, "the value is not valid YAML"),
    # data that is not where the sweep says, found before anything trains (--dry-run too)
    ("dry-run-root-missing", ["run", "--dry-run", "-o", "datasets=[{name: drive, root: {tmp}/nope}]"], 2, "datasets: drive: root {tmp}/nope does not exist"),
    ("root-empty", ["run", "-o", "datasets=[{name: chase_db1, root: {tmp}/emptydir}]"], 2, "chase_db1: root {tmp}/emptydir holds none of its cases"),
    ("model-unknown-preset", ["run", "--dry-run", "-o", "models=[{name: swin_unetr, preset: XXL}]"], 2, "models: model 'swin_unetr' has no preset 'XXL'; presets: small, paper"),
    ("external-root-missing", ["run", "--dry-run", "-o", "datasets=[{name: chase_db1, root: {shared}/CHASE_DB1}]", "-o", "eval.external=[{name: drive, root: {tmp}/nope}]"], 2, "eval.external[0]: drive: root {tmp}/nope does not exist"),
    ("msd-root-missing", ["run", "--dry-run", "-o", "datasets=[{name: msd_hippocampus, root: {tmp}/nope}]", "-o", "data.patch_size=null"], 2, "msd_hippocampus: root {tmp}/nope does not exist"),
    # outputs that would overwrite what a user wrote
    ("lb-is-sweep", ["run", "{tmp}/tune.yaml", "--leaderboard", "{tmp}/tune.yaml"], 2, "is a sweep file or a run record"),
    ("lb-output-record", ["leaderboard", "--results", "{results}", "--output", "{results}/existing.json"], 2, "is a sweep file or a run record"),
    ("lb-pointer-escapes", ["leaderboard", "--results", "{tmp}/escaping"], 2, ".leaderboard: must name a .md file in"),
    ("lb-plots-export", ["leaderboard", "--results", "{results}", "--format", "csv", "--plots"], 2, "--plots: only with --format md"),
    ("lb-margin", ["leaderboard", "--results", "{results}", "--equivalence-margin", "0"], 2, "--equivalence-margin: must be > 0"),
    ("lb-format", ["leaderboard", "--format", "xlsx"], 2, "argument --format: invalid choice: 'xlsx'"),
    ("lb-plots-and-no", ["leaderboard", "--plots", "--no-plots"], 2, "not allowed with argument"),
    # commands whose arguments do not fit together
    ("reason-without-force", ["run", "--reason", "x"], 2, "--reason: only with --force"),
    ("partition-local", ["run", "--partition", "p"], 2, "--partition: only with --executor slurm"),
    ("override-into-scalar", ["run", "-o", "trainer.max_steps.x=1"], 2, "max_steps is not a mapping"),
    ("unknown-command", ["trian"], 2, "invalid choice: 'trian'"),
    ("unknown-option", ["run", "--max-steps", "5"], 2, "unrecognized arguments: --max-steps"),
    ("bench-unknown", ["bench", "nope"], 2, "invalid choice: 'nope'"),
    ("bench-gpu-no-gpu", ["bench", "gpu"], 2, "torch sees no GPU here"),
    ("status-no-folder", ["status", "--results", "{tmp}/nope"], 2, "--results {tmp}/nope: no such folder"),
    ("datasets-root", ["datasets", "--root", "{tmp}/nope"], 2, "--root {tmp}/nope: no such folder"),
    ("ensemble-nothing", ["ensemble", "--results", "{results}"], 2, "nothing to ensemble"),
    ("ensemble-no-folder", ["ensemble", "--results", "{tmp}/nope"], 2, "--results {tmp}/nope: no such folder"),
    ("ensemble-members", ["ensemble", "--results", "{results}", "--min-members", "1"], 2, "--min-members: must be >= 2"),
    ("evaluate-no-name", ["evaluate", "--pred", "{tmp}/emptydir", "--gt", "{tmp}/emptydir"], 2, "--name METHOD is required"),
    ("evaluate-dataset", ["evaluate", "--dataset", "nope", "--name", "x"], 2, "unknown dataset 'nope'"),
    ("evaluate-rater", ["evaluate", "--dataset", "synthetic_vessels", "--rater", "2ndHO"], 2, "--rater '2ndHO'"),
    ("predict-no-run", ["predict", "nope", "--results", "{results}", "--dataset", "synthetic_vessels", "--output", "{tmp}/out"], 2, "nope: no run record {results}/nope.json"),
    ("predict-no-weights", ["predict", "existing", "--results", "{results}", "--dataset", "synthetic_vessels", "--output", "{tmp}/out"], 2, "existing: the run kept no weights"),
    ("predict-not-a-model", ["predict", "{tmp}/emptydir", "--dataset", "synthetic_vessels", "--output", "{tmp}/out"], 2, "emptydir: not a model folder (needs model.safetensors and config.json)"),
]
# fmt: on


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


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
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)
    )
    (tmp_path / "bomb.yaml").write_text(bomb)
    (tmp_path / "recursive.yaml").write_text("name: &n [*n]\n")
    (tmp_path / "tag.yaml").write_text(f"name: !!python/object/apply:os.system ['touch {tmp_path}/pwned']\n")
    (tmp_path / "deep.yaml").write_text("[" * 50_000 + "]" * 50_000 + "\n")
    (tmp_path / "huge.yaml").write_text("#" * (2 << 20))
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (tmp_path / "escaping").mkdir()
    (tmp_path / "escaping" / "r.json").write_text(json.dumps(_RECORD))
    (tmp_path / "escaping" / ".leaderboard").write_text("../../elsewhere/leaderboard.md\n")
    results = tmp_path / "results"
    results.mkdir()
    (results / "existing.json").write_text(json.dumps(_RECORD))
    (tmp_path / "leaderboard.md").write_text("# an existing leaderboard\n")
    return {"tmp": tmp_path, "results": results}


@pytest.mark.parametrize(("argv", "code", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_and_touches_nothing(world, capsys, monkeypatch, argv, code, message) -> None:
    tmp, results = world["tmp"], world["results"]
    shared = Path(os.environ.get("SEGBENCH_SHARED_DATA") or "../shared/data").resolve()  # before the chdir
    monkeypatch.chdir(tmp)
    fill = {"tmp": str(tmp), "results": str(results), "shared": str(shared)}
    args = [_fill(a, fill) for a in argv]
    if args[0] in ("run", "tune") and "--results" not in args:
        args += ["--results", str(results)]
    before = _digest(tmp)
    try:
        got = main(args)
    except SystemExit as e:  # argparse's own errors exit from inside the parser
        got = e.code
    assert got == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.match(rf"segbench( {re.escape(args[0])})?: error: ", err), err  # argparse: `segbench: error:`
    assert _fill(message, fill) in err, err
    assert "Traceback" not in err
    assert _digest(tmp) == before  # no record, leaderboard or file changed
    assert not (tmp / "pwned").exists()  # no tag ran code


def test_there_are_at_least_eighty_rows() -> None:
    assert len(ROWS) >= 80


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
