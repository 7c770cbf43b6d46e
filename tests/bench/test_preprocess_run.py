"""Preprocessing through the runner, the test-metrics callback and ``segbench predict``: scores and
written label maps are on the label files' own grid (read with nibabel), whatever grid the
network saw."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from bench.config import ConfigError, sweep_from_dict
from bench.evaluate.predict import find_model, load_model, predict
from bench.run import run_sweep
from bench.run.callbacks import CaseMetricsCallback
from bench.run.plan import plan_sweep
from datamodules.generic import NnunetRawDataModule
from tests.conftest import tiny_sweep_dict
from tests.datamodules.conftest import save_nifti, shared_root, write_nnunet_json

# voxel axis 0 -> -x (0.8 mm), axis 1 -> +z (3.2 mm), axis 2 -> -y (0.8 mm): permuted and anisotropic
PERMUTED = np.array([[-0.8, 0, 0, 10.0], [0, 0, -0.8, 5.0], [0, 3.2, 0, 1.0], [0, 0, 0, 1]])
IDS = ("001", "003", "004", "006", "007", "008")


def _hippocampus(root: Path) -> Path:
    """Real MSD Hippocampus cases rewritten (in a temp folder) with the affine ``PERMUTED``."""
    src = shared_root("MSD_Task04_Hippocampus")
    for n in IDS:
        img = np.asarray(nib.load(src / "imagesTr" / f"hippocampus_{n}.nii.gz").dataobj)
        lab = np.asarray(nib.load(src / "labelsTr" / f"hippocampus_{n}.nii.gz").dataobj)
        save_nifti(root / "imagesTr" / f"hippocampus_{n}_0000.nii.gz", img, affine=PERMUTED)
        save_nifti(root / "labelsTr" / f"hippocampus_{n}.nii.gz", lab, affine=PERMUTED)
    write_nnunet_json(root, channel_names={"0": "T1"}, labels={"background": 0, "head": 1, "body": 2})
    return root


def _sweep(root: Path, **options: object) -> dict:
    dataset = {"name": "nnunet_raw", "root": str(root), "num_folds": 1, **options}
    return tiny_sweep_dict(
        datasets=[dataset],
        data={"batch_size": 2, "patch_size": [16, 16, 16], "samples_per_epoch": 4},
        eval={"sw_batch_size": 4, "betti_patch": 16, "save_predictions": 8},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """A 2-step run on the anisotropic, permuted Hippocampus copy with spacing and orientation set."""
    tmp = tmp_path_factory.mktemp("preprocess-run")
    root = _hippocampus(tmp / "data")
    options = {"spacing": [0.7, 0.7, 2.0], "orientation": "RAS"}
    (record,) = run_sweep(sweep_from_dict(_sweep(root, **options)), tmp / "results", progress=False)
    assert record.done, record.traceback
    return root, tmp / "results", record


def test_the_record_states_the_file_grid_of_every_test_case(trained) -> None:
    root, results, record = trained
    assert record.config["dataset"]["kwargs"]["spacing"] == [0.7, 0.7, 2.0]
    pre = record.split["preprocess"]
    assert pre["spacing"] == [0.7, 0.7, 2.0] and pre["orientation"] == "RAS"
    assert (
        sorted(pre["test_grid"]) == sorted(record.split["test"]) == sorted(c["case_id"] for c in record.cases)
    )
    for cid, grid in pre["test_grid"].items():
        file = nib.load(root / "labelsTr" / f"{cid}.nii.gz")
        assert grid["shape"] == list(file.shape)
        assert grid["spacing"] == pytest.approx([float(z) for z in file.header.get_zooms()])
        saved = np.load(results / record.predictions[cid])
        np.testing.assert_array_equal(saved["label"], np.asarray(file.dataobj))
        assert saved["pred"].shape == file.shape and saved["image"].shape == (1, *file.shape)
        assert list(saved["spacing"]) == pytest.approx([0.8, 3.2, 0.8])
        row = next(c for c in record.cases if c["case_id"] == cid)
        for k in (1, 2):  # the recorded Dice is that of the saved (file-grid) prediction
            p, t = saved["pred"] == k, saved["label"] == k
            want = 2 * (p & t).sum() / (p.sum() + t.sum()) if p.sum() + t.sum() else float("nan")
            assert row[f"dice_{k}"] == pytest.approx(want, nan_ok=True)


def test_options_are_part_of_the_run_id(trained) -> None:
    root, _, record = trained
    plain = sweep_from_dict(_sweep(root)).expand()[0]
    resampled = sweep_from_dict(_sweep(root, spacing=[0.7, 0.7, 2.0], orientation="RAS")).expand()[0]
    assert resampled.run_id == record.run_id != plain.run_id
    assert "spacing" not in plain.dataset.kwargs  # a run without options is configured as before


def test_predict_writes_the_label_file_grid_and_affine(trained, tmp_path) -> None:
    root, results, record = trained
    model = load_model(find_model(record.run_id, results))
    out = predict(model, tmp_path / "pred", dataset="nnunet_raw", probabilities=True, progress=False)
    assert sorted(out.labels) == sorted(record.split["test"])
    for cid, path in out.labels.items():
        written, file = nib.load(path), nib.load(root / "labelsTr" / f"{cid}.nii.gz")
        assert written.shape == file.shape
        np.testing.assert_allclose(written.affine, file.affine)
        saved = np.load(results / record.predictions[cid])  # the run's own prediction of the case
        np.testing.assert_array_equal(np.asarray(written.dataobj), saved["pred"])
    # the same case's image given as a file: prepared and mapped back alike, through its affine
    cid = record.split["test"][0]
    images = tmp_path / "images"
    source = root / "imagesTr" / f"{cid}_0000.nii.gz"
    images.mkdir()
    (images / source.name).write_bytes(source.read_bytes())
    from_file = predict(model, tmp_path / "masks", input_dir=images, probabilities=True, progress=False)
    written = nib.load(from_file.labels[source.name[:-7]])
    assert written.shape == nib.load(source).shape
    np.testing.assert_allclose(written.affine, PERMUTED)
    np.testing.assert_allclose(
        np.load(from_file.probabilities[source.name[:-7]]), np.load(out.probabilities[cid]), atol=1e-5
    )
    np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(nib.load(out.labels[cid]).dataobj))


def test_bad_option_fails_the_plan_in_one_line(tmp_path) -> None:
    root = _hippocampus(tmp_path / "data")
    with pytest.raises(ConfigError) as err:
        plan_sweep(sweep_from_dict(_sweep(root, spacing=[1.0, 1.0])))
    assert "spacing needs 3 entries" in str(err.value) and "\n" not in str(err.value)


# ---- the callback: probabilities -> file grid -> argmax -> post-processing -----------------------------


def _boxes(root: Path) -> Path:
    """Five cases: a box of class 1 and a box of class 2, written with the permuted affine."""
    rng = np.random.default_rng(0)
    for i in range(5):
        label = np.zeros((10, 6, 12), np.uint8)
        label[2:6, 1:4, 3:9] = 1
        label[6:9, 2:5, 1:4] = 2
        save_nifti(root / "imagesTr" / f"b{i}_0000.nii.gz", rng.normal(size=label.shape), affine=PERMUTED)
        save_nifti(root / "labelsTr" / f"b{i}.nii.gz", label, affine=PERMUTED)
    write_nnunet_json(root)
    return root


def test_callback_scores_the_post_processed_argmax_on_the_file_grid(tmp_path) -> None:
    root = _boxes(tmp_path / "boxes")
    dm = NnunetRawDataModule(root, orientation="RAS", cache_dir=tmp_path / "cache", num_folds=1)
    dm.setup("test")
    cid = dm.splits["test"][0]
    case = dm.case(cid)
    pred = case.label.copy()
    far = tuple(np.argwhere(pred == 0)[0])
    pred[far] = 1  # a stray voxel of class 1, away from its box
    prob = np.stack([pred == k for k in range(3)]).astype(np.float32)
    outputs = {
        "prob": torch.from_numpy(prob),
        "pred": None,
        "label": torch.from_numpy(case.label),
        "fov": None,
        "case_id": cid,
        "spacing": list(case.spacing),
    }
    batch = {"image": torch.from_numpy(case.image[None])}
    trainer = SimpleNamespace(datamodule=dm, world_size=1)
    file = np.asarray(nib.load(root / "labelsTr" / f"{cid}.nii.gz").dataobj)
    for how in ("none", "largest_component"):
        cb = CaseMetricsCallback(save_dir=tmp_path / how / "run", save_ids={cid})
        cb.on_test_epoch_start(trainer, None)
        cb.on_test_batch_end(trainer, SimpleNamespace(postprocess=how), outputs, batch, 0)
        cb.on_test_epoch_end(trainer, None)
        (row,) = cb.rows
        saved = np.load(tmp_path / how / "run" / f"{cid}.npz")
        np.testing.assert_array_equal(saved["label"], file)
        assert list(saved["spacing"]) == pytest.approx([0.8, 3.2, 0.8])
        stray = saved["pred"] == 1
        if how == "none":
            assert row["dice_1"] == pytest.approx(2 * 72 / (72 + 73)) and row["dice_2"] == 1.0
            assert stray.sum() == 73
        else:  # the stray voxel is its own component on the file grid and goes
            assert row["dice_1"] == 1.0 and row["raw"]["dice_1"] < 1.0
            _, n = ndimage.label(stray, structure=np.ones((3, 3, 3)))
            assert n == 1 and stray.sum() == 72


def test_evaluate_run_on_its_own_split_gives_the_recorded_file_grid_metrics(trained, tmp_path) -> None:
    """``segbench evaluate --run`` on the run's own (preprocessed) dataset: ``segbench predict`` writes
    file-grid label maps and evaluate scores them against the label files, so each case's Dice is
    the recorded one (not a shape mismatch against the resampled label)."""
    import json
    import math

    from bench.cli import main
    from bench.records import load_records

    root, results, record = trained
    given = record.config["dataset"]["kwargs"]
    kwargs = [
        f"--dataset-arg={k}={json.dumps(v)}" for k, v in given.items() if k not in ("files_digest", "root")
    ]
    argv = ["evaluate", "--run", record.run_id, "--dataset", "nnunet_raw", "--root", str(root), *kwargs]
    argv += ["--results", str(results)]
    assert main([*argv, "--quiet", "--betti-patch", "16"]) == 0
    (ev,) = [r for r in load_records(results)[0] if r.kind == "evaluation"]
    want = {c["case_id"]: c for c in record.cases}
    got = {c["case_id"]: c for c in ev.cases}
    assert got.keys() == want.keys()
    for cid in want:
        for key in ("dice_1", "dice_2"):
            assert math.isclose(got[cid][key], want[cid][key], abs_tol=1e-12), (cid, key)
