"""Kept weights and ``segbench predict``: a done run keeps its network; predicting its own test split
and scoring the label maps (and probabilities) with ``segbench evaluate`` gives the recorded
per-case metrics exactly; bad models, inputs and output folders are one line, nothing written."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.config import sweep_from_dict
from bench.evaluate.cases import EvalSettings
from bench.evaluate.plan import plan_dataset
from bench.evaluate.predict import MANIFEST, PredictError, find_model, load_model, predict
from bench.evaluate.score import execute
from bench.records import load_record, record_path, supersede
from bench.run import run_sweep
from datamodules.download import file_digest
from tests.conftest import tiny_sweep_dict

DATASET = {"size": [64, 64], "num_train": 4, "num_val": 2, "num_test": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tiny done run (2 steps) in its own results folder: (results, run id)."""
    results = tmp_path_factory.mktemp("predict-runs")
    (record,) = run_sweep(sweep_from_dict(tiny_sweep_dict()), results, progress=False)
    assert record.done, record.error
    return results, record.run_id


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---- keeping the model ---------------------------------------------------------------------


def test_a_done_run_keeps_its_weights_and_config(trained) -> None:
    results, run_id = trained
    record = load_record(record_path(results, run_id))
    weights = results / record.weights["file"]
    assert record.weights["file"] == f"models/{run_id}/model.safetensors"
    assert weights.is_file() and record.weights["sha256"] == file_digest(weights)
    assert record.weights["bytes"] == weights.stat().st_size
    config = json.loads((weights.parent / "config.json").read_text())
    assert config["run_id"] == run_id and config["config"] == record.config
    assert config["data"]["num_classes"] == 2 and config["data"]["spatial_dims"] == 2
    assert not (results / ".work" / run_id / "checkpoints").exists()  # optimiser state is gone


def test_keep_model_none_keeps_nothing_and_keeps_the_run_id(tmp_path) -> None:
    kept = sweep_from_dict(tiny_sweep_dict()).expand()[0]
    sweep = sweep_from_dict(
        tiny_sweep_dict(eval={"sw_batch_size": 4, "betti_patch": 32, "keep_model": "none"})
    )
    (record,) = run_sweep(sweep, tmp_path, progress=False)
    assert record.done and record.run_id == kept.run_id
    assert "weights" not in record.to_dict() and not (tmp_path / "models").exists()


def test_force_moves_the_weights_beside_the_superseded_record(trained, tmp_path) -> None:
    results, run_id = trained
    copy = tmp_path / "r"
    shutil.copytree(results, copy)
    before = _digest(copy / "models" / run_id)
    dest = supersede(copy, run_id, "test")
    moved = dest.with_suffix(".model")
    assert not (copy / "models" / run_id).exists()
    assert _digest(moved) == before
    index = [json.loads(x) for x in (copy / ".superseded" / "index.jsonl").read_text().splitlines()]
    assert index[-1]["model"] == str(moved.relative_to(copy))


# ---- the round trip ------------------------------------------------------------------------


def _scored(pred_dir: Path, results: Path, name: str) -> dict[str, dict]:
    plan = plan_dataset(
        pred_dir,
        "synthetic_vessels",
        method=name,
        dataset_kwargs=DATASET,
        settings=EvalSettings(betti_patch=32),
    )
    outcome = execute(plan, results)
    assert not outcome.record.problems, outcome.record.problems
    return {row["case_id"]: row for row in outcome.record.cases}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_predict_then_evaluate_reproduces_the_recorded_metrics(trained, tmp_path) -> None:
    results, run_id = trained
    record = load_record(record_path(results, run_id))
    out = tmp_path / "pred"
    args = ["--dataset", "synthetic_vessels", "--output", str(out), "--probabilities", "--quiet"]
    code = main(["predict", run_id, "--results", str(results), *args])
    assert code == 0
    recorded = {row["case_id"]: row for row in record.cases}
    assert sorted(p.name for p in out.glob("*.png")) == [f"{c}.png" for c in sorted(recorded)]
    from_probs = _scored(out / "probabilities", tmp_path / "eval", "probs")
    from_labels = _scored(out, tmp_path / "eval", "labels")
    assert set(from_probs) == set(recorded)
    compared = 0
    for cid, row in recorded.items():
        for key, value in row.items():
            if key == "case_id":
                continue
            assert _same(from_probs[cid][key], value), (cid, key, from_probs[cid][key], value)
            compared += 1
            if key in from_labels[cid]:  # the label maps: every metric that needs no probabilities
                assert _same(from_labels[cid][key], value), (cid, key)
    assert compared >= 2 * 10


def test_predict_a_folder_keeps_names_sizes_and_nifti_header(trained, tmp_path) -> None:
    import nibabel as nib
    from PIL import Image

    results, run_id = trained
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((50, 70)) * 255).astype(np.uint8)).save(images / "scan A.png")
    np.save(images / "b.npy", rng.random((1, 40, 33)).astype(np.float32))
    model = load_model(find_model(run_id, results))
    out = predict(model, tmp_path / "out", input_dir=images, progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MANIFEST, "b.npy", "scan A.png"]
    assert np.asarray(Image.open(out.labels["scan A"])).shape == (50, 70)
    assert np.load(out.labels["b"]).shape == (40, 33)
    # a 2D model does not take volumes; the NIfTI path is checked with a one-slice-thick image
    affine = np.array([[0.5, 0, 0, 10], [0, 0.7, 0, -3], [0, 0, 2.0, 4], [0, 0, 0, 1]])
    src = nib.Nifti1Image(rng.random((20, 24, 1)).astype(np.float32), affine)
    src.header["descrip"] = b"segbench test"
    from bench.evaluate.predict import write_labels

    write_labels(tmp_path / "x.nii.gz", np.ones((20, 24, 1), np.int64), src)
    back = nib.load(str(tmp_path / "x.nii.gz"))
    assert np.allclose(back.affine, affine) and back.header["descrip"] == b"segbench test"
    assert back.get_data_dtype() == np.uint8


# ---- bad input: one line, nothing written --------------------------------------------------


def _one_line_error(argv: list[str], capsys, watch: Path) -> str:
    before = _digest(watch)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert _digest(watch) == before
    return err


def test_weights_that_changed_are_refused(trained, tmp_path, capsys) -> None:
    results, run_id = trained
    copy = tmp_path / "r"
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("predictions", ".work"))
    weights = copy / "models" / run_id / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    argv = [
        "predict",
        run_id,
        "--results",
        str(copy),
        "--dataset",
        "synthetic_vessels",
        "--output",
        str(tmp_path / "o"),
    ]
    err = _one_line_error(argv, capsys, tmp_path)
    assert "model.safetensors: sha256" in err and "does not match the recorded" in err


def test_wrong_channel_count_is_refused(trained, tmp_path, capsys) -> None:
    from PIL import Image

    results, run_id = trained
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "rgb.png")
    argv = [
        "predict",
        run_id,
        "--results",
        str(results),
        "--input",
        str(images),
        "--output",
        str(tmp_path / "o"),
    ]
    err = _one_line_error(argv, capsys, tmp_path)
    assert "rgb.png: 3 channel(s); the model was trained on 1" in err


def test_an_output_folder_with_other_files_is_refused(trained, tmp_path, capsys) -> None:
    results, run_id = trained
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = [
        "predict",
        run_id,
        "--results",
        str(results),
        "--dataset",
        "synthetic_vessels",
        "--output",
        str(out),
    ]
    err = _one_line_error(argv, capsys, tmp_path)
    assert f"--output {out}: holds 1 file(s) predict did not write (notes.txt" in err


def test_predict_may_rewrite_its_own_output(trained, tmp_path) -> None:
    results, run_id = trained
    model = load_model(find_model(run_id, results))
    first = predict(model, tmp_path / "o", dataset="synthetic_vessels", progress=False)
    again = predict(model, tmp_path / "o", dataset="synthetic_vessels", progress=False)
    assert first.labels == again.labels
    with pytest.raises(PredictError, match="no run record"):
        find_model("nope", results)


# ---- MSD Hippocampus (3D, shared data) -----------------------------------------------------


def test_hippocampus_round_trip_and_nifti_affine(tmp_path) -> None:
    """3D: the run's own test cases give the recorded metrics exactly; an image of the release
    predicted from ``--input`` keeps its affine and header (read back with nibabel)."""
    import nibabel as nib

    from tests.datamodules.conftest import shared_root

    root = shared_root("MSD_Task04_Hippocampus")
    kwargs = {"root": str(root), "limit_cases": 2}
    sweep = tiny_sweep_dict(
        datasets=[{"name": "msd_hippocampus", **kwargs}],
        data={"batch_size": 2, "patch_size": [16, 16, 16], "samples_per_epoch": 4},
        eval={"sw_batch_size": 4, "betti_patch": 16},
    )
    results = tmp_path / "runs"
    (record,) = run_sweep(sweep_from_dict(sweep), results, progress=False)
    assert record.done, record.error
    model = load_model(find_model(record.run_id, results))
    out = predict(model, tmp_path / "pred", dataset="msd_hippocampus", probabilities=True, progress=False)
    assert sorted(out.labels) == sorted(r["case_id"] for r in record.cases)
    plan = plan_dataset(
        tmp_path / "pred" / "probabilities",
        "msd_hippocampus",
        method="probs",
        dataset_kwargs=kwargs,
        settings=EvalSettings(betti_patch=16),
    )
    rows = {r["case_id"]: r for r in execute(plan, tmp_path / "eval").record.cases}
    for row in record.cases:
        for key, value in row.items():
            if key != "case_id":
                assert _same(rows[row["case_id"]][key], value), (row["case_id"], key)
    images = tmp_path / "images"
    images.mkdir()
    source = root / "imagesTr" / "hippocampus_001.nii.gz"
    shutil.copy(source, images / source.name)
    written = predict(model, tmp_path / "masks", input_dir=images, progress=False).labels["hippocampus_001"]
    src, back = nib.load(str(source)), nib.load(str(written))
    assert written.name == source.name and back.shape == src.shape
    assert np.array_equal(back.affine, src.affine)
    assert np.array_equal(back.header.get_zooms(), src.header.get_zooms())
    assert set(np.unique(np.asarray(back.dataobj))) <= {0, 1, 2}
