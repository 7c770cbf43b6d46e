"""Every command of README's "Use" block runs, as written, on tiny budgets in a scratch folder.

The block is parsed line by line; ``a | b | c`` alternatives are each run; the placeholders
(``my_sweep.yaml``, ``preds/``, ``labels/``, ``DIR``) become a tiny sweep file, prediction and
label folders written here and the shared CHASE_DB1 folder. Budgets are cut with arguments
appended to a line (:data:`TINY`), never by rewriting what the line says. A line this test does
not know fails it, so a command added to the README without a run here is caught.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import lightning  # noqa: F401 - imported at collection: its log handler binds the real stderr,
import numpy as np  # not the captured stream of the first test that would import it (then closed)
import optuna  # noqa: F401 - the same for Optuna's handler (segbench tune)
import pytest
import yaml
from PIL import Image

from tests.conftest import tiny_sweep_dict

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
IN_CI = bool(os.environ.get("SEGBENCH_SHARED_DATA"))  # .ci/run sets it (and starts SLURM)
SHARED = Path(os.environ.get("SEGBENCH_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()

TINY: dict[str, list[str]] = {
    "segbench run": [
        "-o",
        "trainer.max_steps=2",
        "-o",
        "models=[{name: unet, channels: [4, 8, 16]}]",
        "-o",
        "losses=[dice_ce, dice+cldice]",
        "-o",
        "data.samples_per_epoch=4",
        "-o",
        "datasets=[{name: synthetic_vessels, num_train: 4, num_val: 2, num_test: 2}]",
    ],
    "segbench run my_sweep.yaml -o trainer.max_steps=500": ["-o", "trainer.max_steps=2"],
    "segbench bench metrics": ["--sizes", "16", "--drive-case", "", "--repeat", "1"],
    "segbench bench models": ["--models", "unet", "--dims", "2", "--size2d", "32", "--repeats", "1"],
    "segbench bench leaderboard": ["--sizes", "4", "8", "--out", "perf/leaderboard.json"],
    "segbench bench layout": ["--nets", "nnunet_plain", "--patch", "16", "16", "16", "--repeats", "1"],
    "segbench bench suite": ["--reps", "1", "--sweep-reps", "0", "--out", "perf/suite.json"],
    "segbench tune my_sweep.yaml": ["--n-trials", "1"],
    "segbench evaluate --dataset chase_db1": ["--results", "eval-runs"],
    "segbench bench data_memory": ["--cases", "5", "--size", "16", "--patch", "8", "--samples", "4"]
    + ["--start-method", "fork"],
    "segbench bench gpu --dry-run": [
        "--families",
        "cnn",
        "--stages",
        "environment",
        "fast_paths",
        "step_time",
    ]
    + ["--out", "perf/gpu-dry-run.json"],
}
"""Arguments appended to a README line (matched by prefix) to make it tiny; the line itself runs."""


def use_lines() -> list[str]:
    """The commands of README's Use block (comments dropped, alternatives expanded)."""
    use = README.read_text().split("## Use\n", 1)[1]
    block = re.search(r"```bash\n(.*?)\n```", use, flags=re.S)
    assert block, "README's Use section has no bash block"
    out = []
    for line in block.group(1).splitlines():
        cmd = line.split("  #")[0].strip()
        if not cmd:
            continue
        alt = re.search(r"(\S+(?:\s*\|\s*\S+)+)", cmd)  # `models | losses | datasets`, `latex|csv|json`
        if alt:
            for choice in re.split(r"\s*\|\s*", alt.group(1)):
                out.append(cmd.replace(alt.group(1), choice))
        else:
            out.append(cmd)
    return out


def _tiny_sweep(path: Path) -> None:
    sweep = tiny_sweep_dict(
        name="readme",
        seeds=[0, 1],
        eval={"sw_batch_size": 4, "betti_patch": 32, "save_predictions": -1, "save_probabilities": True},
        tune={
            "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
            "n_trials": 1,
        },
    )
    path.write_text(yaml.safe_dump(sweep))


def _masks(folder: Path, seed: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(3):
        mask = (rng.random((32, 32)) > 0.6).astype(np.uint8)
        Image.fromarray(mask).save(folder / f"case{i}.png")


def _argv(line: str, scratch: Path) -> list[str]:
    argv = shlex.split(line)
    chase = SHARED / "CHASE_DB1"
    subst = {
        "my_sweep.yaml": str(scratch / "my_sweep.yaml"),
        "preds/": str(scratch / "preds"),
        "labels/": str(scratch / "labels"),
        "DIR": str(chase),
        "images/": str(scratch / "preds"),  # grey 32x32 images
        "masks/": str(scratch / "masks"),
        "export/": str(scratch / "export"),
    }
    if "RUN" in argv:  # a run of the `segbench run` line above, which kept its model
        kept = sorted(p.name for p in (scratch / "runs" / "models").iterdir())
        subst["RUN"] = kept[0]
    if "ID" in argv:  # a test case of that run
        record = yaml.safe_load((scratch / "runs" / f"{subst['RUN']}.json").read_text())
        subst["ID"] = sorted(c["case_id"] for c in record["cases"])[0]
    argv = [subst.get(a, a) for a in argv]
    for prefix, extra in TINY.items():
        if line.startswith(prefix) and (prefix != "segbench run" or line == "segbench run"):
            argv += extra
    return argv


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme-use")
    _tiny_sweep(root / "my_sweep.yaml")
    _masks(root / "preds", 0)
    _masks(root / "labels", 1)
    (root / "perf").mkdir()
    return root


def _needs(line: str) -> str | None:
    """Why a line cannot run here (None: it can); under `.ci/run` nothing may be missing."""
    if "--executor slurm" in line and not os.environ.get("SEGBENCH_SLURM"):
        return "SEGBENCH_SLURM is not set (source .ci/slurm.sh starts a one-node cluster)"
    if "--dataset chase_db1" in line and not (SHARED / "CHASE_DB1").is_dir():
        return f"{SHARED / 'CHASE_DB1'} is missing"
    return None


def test_use_block_lists_known_commands():
    lines = use_lines()
    assert len(lines) >= 20
    assert all(line.startswith(("segbench ", "python -m bench.")) for line in lines), lines


@pytest.mark.parametrize("line", use_lines())
def test_use_command_runs(
    line: str, scratch: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process (the imports are paid once), in the scratch folder, exit code 0, no traceback."""
    why = _needs(line)
    if why:
        if IN_CI and os.environ.get("CI"):
            pytest.fail(f"{line}: {why} under .ci/run")
        pytest.skip(why)
    argv = _argv(line, scratch)
    if "results" in argv and argv[:2] == ["segbench", "leaderboard"]:
        copy = scratch / "reference"  # the reference records: render a copy, never the committed files
        if not copy.exists():
            shutil.copytree(
                REPO / "results", copy, ignore=shutil.ignore_patterns("predictions", "plots", ".cache")
            )
            (copy / ".leaderboard").unlink()
        argv[argv.index("results")] = str(copy)
    monkeypatch.chdir(scratch)
    if argv[0] == "segbench":
        from bench.cli.app import main

        code = main(argv[1:])
    else:
        assert argv[:3] == ["python", "-m", "bench.leaderboard.claims"], line
        from bench.leaderboard import claims

        rest = [str(REPO / "results") if a == "results" else a for a in argv[3:]]
        code = claims.main(rest)
    out, err = capsys.readouterr()
    if "--executor slurm" in line:
        subprocess.run(["scancel", "-u", os.environ.get("USER", "root")], capture_output=True, timeout=60)
    assert code == 0, f"{line}\n{out[-3000:]}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
