"""``segbench evaluate`` compares NIfTI affines: a flipped, permuted or shifted prediction is an error
naming the file; ``--reorient`` puts a flipped / permuted one on the ground truth's grid.

The world-space truth is built by hand: the same mask written with another affine and the array
flipped / transposed to match, so that nibabel's ``as_closest_canonical`` (an independent
reference) gives the same RAS array for both files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bench.evaluate import outside as ev
from bench.evaluate.plan import EvaluationError

SPACING = (1.0, 1.5, 2.0)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segbench evaluate")
    ev.add_arguments(parser)
    return ev.main(parser.parse_args([*argv, "--quiet"]))


def _mask() -> np.ndarray:
    """An asymmetric blob: any flip or permutation of it is a different array."""
    m = np.zeros((8, 7, 6), np.uint8)
    m[1:5, 2:6, 1:3] = 1
    m[1:3, 2:3, 3:5] = 1
    return m


def _ras_affine() -> np.ndarray:
    aff = np.diag([*SPACING, 1.0])
    aff[:3, 3] = (-10.0, 5.0, 3.0)
    return aff


def _write(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _lps(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same world-space mask stored with the x and y axes reversed (LPS)."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3] = array.shape[0] - 1
    flip[1, 3] = array.shape[1] - 1
    return array[::-1, ::-1].copy(), affine @ flip


def _permuted(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same world-space mask stored with its first two axes swapped."""
    swap = np.eye(4)[[1, 0, 2, 3]]
    return array.transpose(1, 0, 2).copy(), affine @ swap


def _folders(tmp_path: Path, pred: np.ndarray, pred_affine: np.ndarray) -> tuple[Path, Path]:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    _write(gt_dir / "c1.nii.gz", _mask(), _ras_affine())
    _write(pred_dir / "c1.nii.gz", pred, pred_affine)
    return gt_dir, pred_dir


def _evaluate(tmp_path: Path, gt_dir: Path, pred_dir: Path, *extra: str) -> dict:
    results = tmp_path / "results"
    rc = _cli(
        ["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m", "--results", str(results), *extra]
    )
    (path,) = sorted(results.glob("eval__*.json"))
    record = json.loads(path.read_text())
    record["rc"] = rc
    return record


@pytest.mark.parametrize("move", [_lps, _permuted], ids=["flipped", "permuted"])
def test_another_orientation_is_an_error_naming_the_file(tmp_path, move):
    pred, aff = move(_mask(), _ras_affine())
    # the independent reference: both files hold one world-space mask
    canon_pred = nib.as_closest_canonical(nib.Nifti1Image(pred, aff)).get_fdata()
    canon_gt = nib.as_closest_canonical(nib.Nifti1Image(_mask(), _ras_affine())).get_fdata()
    np.testing.assert_array_equal(canon_pred, canon_gt)
    gt_dir, pred_dir = _folders(tmp_path, pred, aff)
    _write(gt_dir / "c2.nii.gz", _mask(), _ras_affine())  # a second case on the right grid
    _write(pred_dir / "c2.nii.gz", _mask(), _ras_affine())
    record = _evaluate(tmp_path, gt_dir, pred_dir)
    assert record["rc"] == 1 and [c["case_id"] for c in record["cases"]] == ["c2"]
    (problem,) = record["problems"]
    assert problem["file"] == str(pred_dir / "c1.nii.gz")
    assert "orientation" in problem["problem"] and "--reorient" in problem["problem"]


def test_a_single_misoriented_case_writes_nothing(tmp_path):
    pred, aff = _lps(_mask(), _ras_affine())
    gt_dir, pred_dir = _folders(tmp_path, pred, aff)
    with pytest.raises(EvaluationError, match=r"c1\.nii\.gz.*orientation LPS differs .* RAS"):
        _evaluate(tmp_path, gt_dir, pred_dir)
    assert not list((tmp_path / "results").glob("eval__*.json"))


@pytest.mark.parametrize("move", [_lps, _permuted], ids=["flipped", "permuted"])
def test_reorient_puts_the_prediction_on_the_ground_truths_grid(tmp_path, move):
    pred, aff = move(_mask(), _ras_affine())
    gt_dir, pred_dir = _folders(tmp_path, pred, aff)
    record = _evaluate(tmp_path, gt_dir, pred_dir, "--reorient")
    assert record["rc"] == 0 and not record["problems"]
    (case,) = record["cases"]
    assert case["dice"] == pytest.approx(1.0)  # the same world-space mask


def test_without_reorienting_a_flip_would_score_as_a_poor_segmentation(tmp_path):
    # why the check matters: the stored arrays of the LPS file overlap the truth only in part
    pred, _ = _lps(_mask(), _ras_affine())
    gt = _mask()
    dice = 2 * np.logical_and(pred, gt).sum() / (pred.sum() + gt.sum())
    assert dice < 0.5


def test_a_shifted_origin_is_an_error_even_with_reorient(tmp_path):
    aff = _ras_affine()
    aff[:3, 3] += (2.0, 0.0, 0.0)  # two voxels along x
    gt_dir, pred_dir = _folders(tmp_path, _mask(), aff)
    with pytest.raises(EvaluationError, match=r"c1\.nii\.gz.*affine differs .* origin \(off by 2 mm\)"):
        _evaluate(tmp_path, gt_dir, pred_dir, "--reorient")


def test_the_same_affine_within_float32_precision_is_accepted(tmp_path):
    aff = _ras_affine().astype(np.float32).astype(np.float64) + 1e-6
    gt_dir, pred_dir = _folders(tmp_path, _mask(), aff)
    record = _evaluate(tmp_path, gt_dir, pred_dir)
    assert record["rc"] == 0 and record["cases"][0]["dice"] == pytest.approx(1.0)


def test_dataset_mode_checks_against_the_label_file_the_datamodule_read(tmp_path):
    """``--dataset``: the truth's affine is that of the case's label file (real MSD Hippocampus)."""
    from datamodules import create_datamodule
    from tests.datamodules.conftest import shared_root

    root = shared_root("MSD_Task04_Hippocampus")
    dm = create_datamodule("msd_hippocampus", root=root, limit_cases=2)
    dm.setup("test")
    ids = sorted(dm.splits["test"])
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for i, cid in enumerate(ids):
        img = nib.load(str(root / "labelsTr" / f"{cid}.nii.gz"))
        label = np.asarray(img.dataobj).astype(np.uint8)
        array, affine = _lps(label, img.affine) if i == 0 else (label, img.affine)
        _write(pred_dir / f"{cid}.nii.gz", array, affine)
    argv = ["--pred", str(pred_dir), "--dataset", "msd_hippocampus", "--root", str(root), "--name", "m"]
    argv += ["--dataset-arg", "limit_cases=2", "--results", str(tmp_path / "results"), "--workers", "1"]
    assert _cli(argv) == 1
    (path,) = sorted((tmp_path / "results").glob("eval__*.json"))
    record = json.loads(path.read_text())
    (problem,) = record["problems"]
    assert problem["file"] == str(pred_dir / f"{ids[0]}.nii.gz") and "orientation" in problem["problem"]
    assert [c["case_id"] for c in record["cases"]] == [ids[1]] and record["cases"][0]["dice"] == 1.0
    assert _cli([*argv, "--reorient", "--force"]) == 0  # the same world-space labels: both score 1
