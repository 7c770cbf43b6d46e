"""``segbench evaluate``: real second annotators, NIfTI spacing, formats, mismatches, records.

References are independent of segbench: MONAI (Dice, HD95, NSD), torchmetrics (ECE), numpy
(Brier, Dice by hand) and PIL / hashlib on the raw files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from PIL import Image
from torchmetrics.functional.classification import binary_calibration_error

from bench.evaluate import outside as ev
from bench.evaluate.plan import EvaluationError, case_id_of
from bench.evaluate.score import execute
from bench.metrics import case_metrics
from tests.datamodules.conftest import shared_root

_shared = shared_root  # fail when SEGBENCH_SHARED_DATA is set and the folder is missing, else skip


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segbench evaluate")
    ev.add_arguments(parser)
    return ev.main(parser.parse_args([*argv, "--quiet"]))


def _record(results: Path) -> dict:
    (path,) = sorted(results.glob("eval__*.json"))
    return json.loads(path.read_text())


def _onehot(mask: np.ndarray) -> torch.Tensor:
    m = torch.from_numpy(np.asarray(mask, bool))
    return torch.stack([~m, m])[None].float()


def _monai(pred: np.ndarray, gt: np.ndarray, spacing=None, tol: float = 1.0) -> dict[str, float]:
    p, g = _onehot(pred), _onehot(gt)
    return {
        "dice": float(compute_dice(p, g, include_background=False)),
        "hd95": float(compute_hausdorff_distance(p, g, percentile=95, spacing=spacing)),
        "nsd": float(compute_surface_dice(p, g, [tol], spacing=spacing)),
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- real second annotators --------------------------------------------------------------


def test_chase_second_observer_folder_equals_monai(tmp_path: Path) -> None:
    """CHASE_DB1 2ndHO vs 1stHO, matched by stem in one folder, in 2 worker processes."""
    root = _shared("CHASE_DB1")
    results = tmp_path / "results"
    argv = ["--pred", str(root), "--gt", str(root), "--name", "2nd observer", "--results", str(results)]
    argv += ["--pred-glob", "Image_1[12]?_2ndHO.png", "--gt-glob", "Image_1[12]?_1stHO.png"]
    argv += ["--strip-suffix", "_2ndHO", "--strip-suffix", "_1stHO", "--workers", "2"]
    assert _cli(argv) == 0
    rec = _record(results)
    assert rec["kind"] == "evaluation" and rec["method"] == "2nd observer" and rec["problems"] == []
    assert rec["run_id"].startswith("eval__chase-db1__2nd-observer__")
    assert [c["case_id"] for c in rec["cases"]] == ["Image_11L", "Image_11R", "Image_12L", "Image_12R"]
    for case in rec["cases"]:
        first, second = (root / f"{case['case_id']}_{who}HO.png" for who in ("1st", "2nd"))
        gt, pred = (np.asarray(Image.open(f).convert("L")) > 127 for f in (first, second))
        ref = _monai(pred, gt)
        assert case["dice"] == pytest.approx(ref["dice"], abs=1e-6)
        assert case["hd95"] == pytest.approx(ref["hd95"], rel=1e-6)
        assert case["nsd"] == pytest.approx(ref["nsd"], abs=1e-6)
        on_arrays = case_metrics(pred.astype(np.int64), gt.astype(np.int64), num_classes=2)
        assert {k: v for k, v in case.items() if k != "case_id"} == on_arrays  # every metric, exactly
        files = rec["config"]["source"]["files"][case["case_id"]]
        assert files["pred_sha256"] == _sha(second) and files["gt_sha256"] == _sha(first)
    assert rec["aggregates"]["dice"]["n"] == 4
    assert rec["aggregates"]["dice"]["mean"] == pytest.approx(np.mean([c["dice"] for c in rec["cases"]]))


def test_drive_second_observer_palette_gifs(tmp_path: Path) -> None:
    """DRIVE's 2nd observer (palette GIF, indices {0, 1}) vs the 1st ({0, 255} GIF)."""
    root = _shared("DRIVE") / "test"
    argv = ["--pred", str(root / "2nd_manual"), "--gt", str(root / "1st_manual"), "--name", "observer 2"]
    argv += ["--strip-suffix", "_manual1", "--strip-suffix", "_manual2", "--pred-glob", "0[12]_*"]
    argv += ["--gt-glob", "0[12]_*", "--results", str(tmp_path), "--workers", "1"]
    assert _cli(argv) == 0
    rec = _record(tmp_path)
    assert [c["case_id"] for c in rec["cases"]] == ["01", "02"]
    for case in rec["cases"]:
        n = case["case_id"]
        gt = np.asarray(Image.open(root / "1st_manual" / f"{n}_manual1.gif").convert("L")) > 127
        pred = np.asarray(Image.open(root / "2nd_manual" / f"{n}_manual2.gif").convert("L")) > 127
        assert pred.any() and gt.any()
        assert case["dice"] == pytest.approx(_monai(pred, gt)["dice"], abs=1e-6)
        assert case["hd95"] == pytest.approx(_monai(pred, gt)["hd95"], rel=1e-6)


def _chase_test_ids(root: Path, n: int) -> list[str]:
    from datamodules import create_datamodule

    dm = create_datamodule("chase_db1", root=root, limit_cases=n)
    dm.setup("test")
    return list(dm.splits["test"]), dm


def test_human_baseline_chase(tmp_path: Path) -> None:
    """``--dataset chase_db1 --rater 2nd``: the 2nd annotator inside the DataModule's FOV vs the 1st."""
    root = _shared("CHASE_DB1")
    argv = ["--dataset", "chase_db1", "--root", str(root), "--rater", "2nd", "--results", str(tmp_path)]
    assert _cli([*argv, "--dataset-arg", "limit_cases=2", "--workers", "2"]) == 0
    rec = _record(tmp_path)
    assert rec["baseline"] == "human" and rec["method"] == "second annotator (2nd)"
    assert rec["config"]["dataset"] == {"name": "chase_db1", "kwargs": {"limit_cases": 2}}
    assert rec["config"]["source"]["reference"] == "1st" and rec["config"]["split"] == "test"
    ids, dm = _chase_test_ids(root, 2)
    assert [c["case_id"] for c in rec["cases"]] == sorted(ids) and rec["split"]["test"] == ids
    for case in rec["cases"]:
        fov = dm.case(case["case_id"]).fov
        assert fov is not None and not fov.all()
        gt, pred = (
            np.asarray(Image.open(root / f"{case['case_id']}_{who}HO.png").convert("L")) > 127
            for who in ("1st", "2nd")
        )
        ref = _monai(pred & fov, gt & fov)
        assert case["dice"] == pytest.approx(ref["dice"], abs=1e-6)
        assert case["hd95"] == pytest.approx(ref["hd95"], rel=1e-6)
    from bench.leaderboard import render

    rows = [line for line in render([rec], plots=False).splitlines() if "second annotator (2nd)" in line]
    assert rows and rows[0].startswith("| human | second annotator (2nd) |")  # marked, not ranked
    with pytest.raises(ValueError, match=r"--rater '3rd': chase_db1 has raters \['1st', '2nd'\]"):
        _cli([*argv[:4], "--rater", "3rd", "--dataset-arg", "limit_cases=1"])
    with pytest.raises(ValueError, match="reference annotator itself"):
        _cli([*argv[:4], "--rater", "1st", "--dataset-arg", "limit_cases=1"])


def test_dataset_mode_scores_like_the_human_baseline(tmp_path: Path) -> None:
    """``--pred DIR --dataset``: the DataModule's FOV and labels; an extra file is reported by name."""
    root = _shared("CHASE_DB1")
    ids, _ = _chase_test_ids(root, 2)
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    for cid in ids:  # the 2nd observer saved as a 0/255 PNG named <case_id>_pred.png
        mask = np.asarray(Image.open(root / f"{cid}_2ndHO.png").convert("L")) > 127
        Image.fromarray(mask.astype(np.uint8) * 255).save(pred_dir / f"{cid}_pred.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(pred_dir / "Image_99L_pred.png")
    common = [
        "--dataset",
        "chase_db1",
        "--root",
        str(root),
        "--dataset-arg",
        "limit_cases=2",
        "--workers",
        "1",
    ]
    pred_args = ["--pred", str(pred_dir), "--strip-suffix", "_pred", "--name", "2nd as file"]
    assert _cli([*common, *pred_args, "--results", str(tmp_path / "a"), "--save-predictions", "1"]) == 1
    assert _cli([*common, "--rater", "2nd", "--results", str(tmp_path / "b")]) == 0
    files, rater = _record(tmp_path / "a"), _record(tmp_path / "b")
    first = sorted(ids)[0]
    assert files["predictions"] == {first: f"predictions/{files['run_id']}/{first}.npz"}
    with np.load(tmp_path / "a" / files["predictions"][first]) as z:
        saved = {k: z[k] for k in z.files}
    assert sorted(saved) == ["fov", "image", "label", "pred", "spacing"]
    mask = np.asarray(Image.open(pred_dir / f"{first}_pred.png")) > 0
    assert np.array_equal(saved["pred"], mask) and saved["image"].shape == mask.shape
    assert "predictions" not in rater
    assert files["problems"] == [
        {
            "case_id": "Image_99L",
            "file": str(pred_dir / "Image_99L_pred.png"),
            "problem": "no ground truth for this case",
        }
    ]
    assert files["cases"] == rater["cases"]
    assert "baseline" not in files and files["config"]["source"]["kind"] == "dataset"


# ---- NIfTI with anisotropic spacing ------------------------------------------------------


def _blob(shape, centre, radii) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    c = np.asarray(centre).reshape(-1, 1, 1, 1)
    r = np.asarray(radii).reshape(-1, 1, 1, 1)
    return (((grid - c) / r) ** 2).sum(0) <= 1


def _save_nifti(path: Path, array: np.ndarray, spacing) -> Path:
    img = nib.Nifti1Image(array, np.diag([*spacing, 1.0]))
    img.header.set_zooms(tuple(spacing) + (1.0,) * (array.ndim - len(spacing)))
    nib.save(img, path)
    return path


def test_nifti_anisotropic_spacing_equals_monai(tmp_path: Path) -> None:
    """nnU-Net-like folders (``case_00N.nii.gz``, predictions ``_pred``): HD95 / NSD in mm as MONAI."""
    spacing = (0.7, 1.1, 2.5)
    shape = (26, 22, 12)
    gt_dir, pred_dir = tmp_path / "labelsTs", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    pairs = {}
    for i, (shift, grow) in enumerate([((2, 0, 0), 1.0), ((0, 1, 1), 1.3), ((1, -1, 0), 0.8)]):
        gt = _blob(shape, (12, 10, 6), (7, 6, 3))
        pred = _blob(shape, np.add((12, 10, 6), shift), np.multiply((7, 6, 3), grow))
        _save_nifti(gt_dir / f"case_{i:03d}.nii.gz", gt.astype(np.uint8), spacing)
        _save_nifti(pred_dir / f"case_{i:03d}_pred.nii.gz", pred.astype(np.uint8), spacing)
        pairs[f"case_{i:03d}"] = (pred, gt)
    argv = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "blobs", "--strip-suffix", "_pred"]
    assert _cli([*argv, "--nsd-tolerance", "1.5", "--results", str(tmp_path / "r"), "--workers", "2"]) == 0
    rec = _record(tmp_path / "r")
    assert rec["config"]["dataset"]["name"] == "labelsTs" and rec["config"]["eval"]["nsd_tolerance"] == 1.5
    assert len(rec["cases"]) == 3
    for case in rec["cases"]:
        ref = _monai(*pairs[case["case_id"]], spacing=spacing, tol=1.5)
        iso = _monai(*pairs[case["case_id"]], spacing=None, tol=1.5)
        assert case["hd95"] == pytest.approx(ref["hd95"], rel=1e-6)
        assert case["nsd"] == pytest.approx(ref["nsd"], abs=1e-6)
        assert case["hd95"] != pytest.approx(iso["hd95"], rel=1e-3)  # the spacing was really used
        assert case["dice"] == pytest.approx(ref["dice"], abs=1e-6)


def test_nnunet_probabilities_npz_are_reordered(tmp_path: Path) -> None:
    """nnU-Net's ``probabilities`` (C, z, y, x) score like the (x, y, z) NIfTI label map, plus ECE/Brier."""
    shape = (10, 8, 6)
    gt = _blob(shape, (5, 4, 3), (3, 3, 2))
    fg = np.clip(_blob(shape, (5, 4, 2), (3, 2, 2)) * 0.8 + 0.1, 0, 1).astype(np.float32)
    gt_dir, lab_dir, prob_dir = (tmp_path / d for d in ("gt", "lab", "prob"))
    for d in (gt_dir, lab_dir, prob_dir):
        d.mkdir()
    _save_nifti(gt_dir / "c1.nii.gz", gt.astype(np.uint8), (1.0, 1.0, 2.0))
    _save_nifti(lab_dir / "c1.nii.gz", (fg > 0.5).astype(np.uint8), (1.0, 1.0, 2.0))
    prob = np.stack([1 - fg, fg]).transpose(0, 3, 2, 1).astype(np.float16)  # SimpleITK order
    np.savez_compressed(prob_dir / "c1.npz", probabilities=prob)
    base = ["--gt", str(gt_dir), "--workers", "1"]
    assert _cli([*base, "--pred", str(lab_dir), "--name", "lab", "--results", str(tmp_path / "a")]) == 0
    argv = [*base, "--pred", str(prob_dir), "--name", "prob", "--results", str(tmp_path / "b")]
    assert _cli([*argv, "--save-predictions", "-1"]) == 0
    lab, pr = _record(tmp_path / "a")["cases"][0], _record(tmp_path / "b")["cases"][0]
    with np.load(tmp_path / "b" / _record(tmp_path / "b")["predictions"]["c1"]) as z:
        assert z["prob"].shape == (2, *shape) and np.array_equal(z["pred"], fg > 0.5)
        assert z["spacing"].tolist() == [1.0, 1.0, 2.0] and "image" not in z.files
    assert {k: v for k, v in pr.items() if k not in ("ece", "brier")} == lab
    p1 = prob.transpose(0, 3, 2, 1)[1].astype(np.float64)
    assert pr["brier"] == pytest.approx(float(np.mean((p1 - gt) ** 2)), abs=1e-6)
    ece = binary_calibration_error(
        torch.from_numpy(p1).flatten(), torch.from_numpy(gt).flatten().long(), n_bins=15
    )
    assert pr["ece"] == pytest.approx(float(ece), abs=1e-6)


# ---- formats, label maps, mismatches ------------------------------------------------------


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def _square(shape=(12, 12), lo=3, hi=9) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[lo:hi, lo:hi] = 1
    return m


def test_formats_and_label_map(tmp_path: Path) -> None:
    """PNG 0/255, TIFF, npy probabilities, npz (C, H, W) probabilities, ``--label-map`` for 128."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    gt = _square()
    pred = _square(lo=4, hi=9)  # 25 of gt's 36 pixels, nothing outside: Dice = 50 / 61
    for cid in ("a", "b", "c", "d", "e"):
        _png(gt_dir / f"{cid}.png", gt * 255)
    _png(pred_dir / "a.png", pred * 255)
    import tifffile

    tifffile.imwrite(pred_dir / "b.tif", pred)
    np.save(pred_dir / "c.npy", pred.astype(np.float32) * 0.6 + 0.2)  # foreground probabilities
    p = pred.astype(np.float32) * 0.6 + 0.2
    np.savez(pred_dir / "d.npz", prob=np.stack([1 - p, p]))
    _png(pred_dir / "e.png", pred * 128)
    argv = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m", "--workers", "1"]
    assert _cli([*argv, "--label-map", "255:1,128:1", "--results", str(tmp_path / "r")]) == 0
    rec = _record(tmp_path / "r")
    rows = {c["case_id"]: c for c in rec["cases"]}
    for cid in rows:
        assert rows[cid]["dice"] == pytest.approx(50 / 61)
    assert "ece" in rows["c"] and "ece" in rows["d"] and "ece" not in rows["a"]
    assert rows["c"]["brier"] == pytest.approx(float(np.mean((p - gt) ** 2)), abs=1e-7)
    kinds = {k: v["kind"] for k, v in rec["config"]["source"]["files"].items()}
    assert kinds == {"a": "label", "b": "label", "c": "prob", "d": "prob", "e": "label"}
    assert rec["config"]["source"]["label_map"] == {"255": 1, "128": 1}
    # without the map, 128 is an unexpected label value, reported by file
    assert _cli([*argv, "--results", str(tmp_path / "s")]) == 1
    (problem,) = _record(tmp_path / "s")["problems"]
    assert (
        problem["file"] == str(pred_dir / "e.png") and "unexpected label values [128]" in problem["problem"]
    )


def test_mismatches_are_reported_by_file(tmp_path: Path) -> None:
    """Missing, extra, mis-shaped, truncated, bad-valued and wrongly spaced files: each named."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    for cid in ("ok", "missing", "shape", "broken", "values", "reversed"):
        _png(gt_dir / f"{cid}.png", _square(shape=(12, 14)))
    _png(pred_dir / "ok.png", _square(shape=(12, 14)))
    _png(pred_dir / "extra.png", _square(shape=(12, 14)))
    _png(pred_dir / "shape.png", _square(shape=(10, 14)))
    (pred_dir / "broken.png").write_bytes(_png(tmp_path / "x.png", _square(shape=(12, 14))).read_bytes()[:40])
    _png(pred_dir / "values.png", _square(shape=(12, 14)) * 3)
    _png(pred_dir / "reversed.png", _square(shape=(14, 12)))
    (pred_dir / "plans.json").write_text("{}")  # not a prediction file: ignored
    argv = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m", "--workers", "2"]
    assert _cli([*argv, "--results", str(tmp_path / "r")]) == 1
    rec = _record(tmp_path / "r")
    assert [c["case_id"] for c in rec["cases"]] == ["ok"]
    got = {p["case_id"]: (p["file"], p["problem"]) for p in rec["problems"]}
    assert got["extra"] == (str(pred_dir / "extra.png"), "no ground truth for this case")
    assert got["missing"] == (str(gt_dir / "missing.png"), f"no prediction in {pred_dir}")
    assert got["shape"][0] == str(pred_dir / "shape.png") and "shape (10, 14)" in got["shape"][1]
    assert got["broken"][0] == str(pred_dir / "broken.png") and "cannot read image" in got["broken"][1]
    assert "unexpected label values [3]" in got["values"][1]
    assert "axes reversed" in got["reversed"][1]
    assert set(got) == {"extra", "missing", "shape", "broken", "values", "reversed"}
    assert set(rec["split"]["skipped"]) == {"missing", "shape", "broken", "values", "reversed"}
    # --missing empty scores the case without prediction as all background (Dice 0), still listed
    assert _cli([*argv, "--missing", "empty", "--results", str(tmp_path / "e")]) == 1
    rec = _record(tmp_path / "e")
    rows = {c["case_id"]: c for c in rec["cases"]}
    assert rows["missing"]["dice"] == 0.0 and rows["missing"]["hd95"] == float("inf")
    assert any(p["case_id"] == "missing" and "--missing empty" in p["problem"] for p in rec["problems"])


def test_nifti_spacing_mismatch_is_reported(tmp_path: Path) -> None:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    vol = _blob((8, 8, 6), (4, 4, 3), (2, 2, 2)).astype(np.uint8)
    for cid, sp in (("a", (1.0, 1.0, 2.0)), ("b", (1.0, 1.0, 3.0))):
        _save_nifti(gt_dir / f"{cid}.nii.gz", vol, (1.0, 1.0, 2.0))
        _save_nifti(pred_dir / f"{cid}.nii.gz", vol, sp)
    argv = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m", "--workers", "1"]
    assert _cli([*argv, "--results", str(tmp_path)]) == 1
    (problem,) = _record(tmp_path)["problems"]
    assert problem["file"] == str(pred_dir / "b.nii.gz")
    assert "spacing (1.0, 1.0, 3.0) differs from the ground truth's (1.0, 1.0, 2.0)" in problem["problem"]


def test_user_errors_name_the_file_or_option(tmp_path: Path) -> None:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    _png(gt_dir / "a.png", _square())
    _png(pred_dir / "a.png", _square())
    np.save(pred_dir / "a.npy", _square())
    with pytest.raises(EvaluationError, match=r"a\.npy and .*a\.png both give case id 'a'"):
        _cli(["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m"])
    with pytest.raises(EvaluationError, match=r"--pred .*nowhere: not a folder"):
        _cli(["--pred", str(tmp_path / "nowhere"), "--gt", str(gt_dir), "--name", "m"])
    with pytest.raises(ValueError, match="--label-map: '255-1'"):
        _cli(["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m", "--label-map", "255-1"])
    with pytest.raises(EvaluationError, match="--name METHOD is required"):
        _cli(["--pred", str(pred_dir), "--gt", str(gt_dir)])
    (pred_dir / "a.npy").unlink()
    (pred_dir / "a.png").write_bytes(b"not a png")
    with pytest.raises(EvaluationError, match=r"no case could be evaluated .*a\.png: cannot read image"):
        _cli(["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m", "--results", str(tmp_path)])
    assert not list(tmp_path.glob("eval__*.json"))


def test_same_inputs_same_record_and_force_supersedes(tmp_path: Path) -> None:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    _png(gt_dir / "a.png", _square())
    _png(pred_dir / "a.png", _square(lo=4))
    argv = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m", "--results", str(tmp_path / "r")]
    plan = ev.plan_from_args(_parse([*argv, "--quiet"]))
    first = execute(plan, tmp_path / "r")
    again = execute(plan, tmp_path / "r")
    assert again.existed and again.path == first.path and again.record == first.record
    forced = execute(plan, tmp_path / "r", force=True)
    assert not forced.existed and len(list((tmp_path / "r" / ".superseded").glob("*.json"))) == 1
    _png(pred_dir / "a.png", _square(lo=5))  # new content: a new record id
    changed = execute(ev.plan_from_args(_parse([*argv, "--quiet"])), tmp_path / "r")
    assert changed.path != first.path and changed.record.cases[0]["dice"] < first.record.cases[0]["dice"]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ev.add_arguments(parser)
    return parser.parse_args(argv)


def test_case_ids() -> None:
    assert case_id_of("case_001_0000.nii.gz", ["_0000"]) == "case_001"
    assert case_id_of("case_001.nii.gz") == "case_001"
    assert case_id_of("a_pred.PNG", ["_0000", "_pred"]) == "a"
    assert case_id_of("plans.json") is None


def test_records_render_on_the_leaderboard(tmp_path: Path) -> None:
    """An evaluation record and a human baseline both appear as rows of their dataset's table."""
    from bench.leaderboard import render

    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    for cid in ("a", "b", "c"):
        _png(gt_dir / f"{cid}.png", _square())
        _png(pred_dir / f"{cid}.png", _square(lo=4))
    argv = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "SAM-Med zero-shot", "--workers", "1"]
    assert _cli([*argv, "--results", str(tmp_path / "r"), "--dataset-name", "toy"]) == 0
    text = render([_record(tmp_path / "r")])
    assert "SAM-Med zero-shot" in text and "toy" in text


def test_probability_maps_are_checked(tmp_path: Path) -> None:
    """Channels that do not sum to 1, a wrong channel count and values above 1 are problems by file."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    for cid in ("sum", "channels", "range", "ok"):
        _png(gt_dir / f"{cid}.png", _square())
    p = _square().astype(np.float32) * 0.8 + 0.1
    np.save(pred_dir / "sum.npy", np.stack([p, p]))  # sums to 2 * p
    np.save(pred_dir / "channels.npy", np.stack([1 - p, p / 2, p / 2]))  # 3 channels, 2 classes
    np.save(pred_dir / "range.npy", np.stack([1 - p, p]) * 1.5)  # not probabilities, not whole numbers
    np.save(pred_dir / "ok.npy", np.stack([1 - p, p]))
    argv = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m", "--workers", "1"]
    assert _cli([*argv, "--results", str(tmp_path)]) == 1
    rec = _record(tmp_path)
    assert [c["case_id"] for c in rec["cases"]] == ["ok"]
    got = {p["case_id"]: p["problem"] for p in rec["problems"]}
    assert got["sum"].startswith(str(pred_dir / "sum.npy")) and "must sum to 1" in got["sum"]
    assert "3 probability channels but the ground truth has 2 classes" in got["channels"]
    assert "float values in [0.15, 1.35] are neither probabilities" in got["range"]


def test_msd_nifti_predictions_against_the_datamodule(tmp_path: Path) -> None:
    """Real MSD hippocampus NIfTI (3 classes): per-class Dice / HD95 as MONAI with the header
    spacing; a prediction whose header spacing differs from the DataModule's case is reported."""
    root = _shared("MSD_Task04_Hippocampus")
    from datamodules import create_datamodule

    dm = create_datamodule("msd_hippocampus", root=root, limit_cases=2)
    dm.setup("test")
    ids = list(dm.splits["test"])
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    pairs = {}
    for i, cid in enumerate(ids):
        img = nib.load(str(root / "labelsTr" / f"{cid}.nii.gz"))
        gt = np.asarray(img.dataobj).astype(np.uint8)
        pred = np.roll(gt, 1, axis=0)
        header = img.header.copy()
        if i == 1:
            header.set_zooms((1.0, 1.0, 1.5))
        nib.save(nib.Nifti1Image(pred, img.affine, header), pred_dir / f"{cid}_0000.nii.gz")
        pairs[cid] = (pred, gt, tuple(float(z) for z in img.header.get_zooms()))
    argv = ["--pred", str(pred_dir), "--dataset", "msd_hippocampus", "--root", str(root), "--name", "rolled"]
    argv += ["--dataset-arg", "limit_cases=2", "--strip-suffix", "_0000", "--results", str(tmp_path)]
    assert _cli([*argv, "--workers", "1"]) == 1
    rec = _record(tmp_path)
    (problem,) = rec["problems"]
    assert problem["file"] == str(pred_dir / f"{ids[1]}_0000.nii.gz") and "spacing" in problem["problem"]
    (case,) = rec["cases"]
    pred, gt, spacing = pairs[case["case_id"]]
    p = torch.from_numpy(np.stack([pred == c for c in range(3)])[None]).float()
    g = torch.from_numpy(np.stack([gt == c for c in range(3)])[None]).float()
    dice = compute_dice(p, g, include_background=False)[0]
    hd95 = compute_hausdorff_distance(p, g, percentile=95, spacing=spacing)[0]
    assert [case["dice_1"], case["dice_2"]] == pytest.approx(dice.tolist(), abs=1e-6)
    assert [case["hd95_1"], case["hd95_2"]] == pytest.approx(hd95.tolist(), rel=1e-6)
    assert case["dice"] == pytest.approx(float(dice.mean()), abs=1e-6)


def test_segbench_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through ``segbench evaluate``: 0 all matched, 1 record with problems, 2 a one-line user error."""
    from bench.cli import main

    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    for cid in ("a", "b"):
        _png(gt_dir / f"{cid}.png", _square() * 255)
    _png(pred_dir / "a.png", _square(lo=4) * 255)
    base = [
        "evaluate",
        "--pred",
        str(pred_dir),
        "--gt",
        str(gt_dir),
        "--name",
        "m",
        "--quiet",
        "--workers",
        "1",
    ]
    assert main([*base, "--results", str(tmp_path / "r1")]) == 1
    out = capsys.readouterr().out
    assert f"{gt_dir / 'b.png'}: no prediction in {pred_dir}" in out and "record written to" in out
    _png(pred_dir / "b.png", _square(lo=4) * 255)
    assert main([*base, "--results", str(tmp_path / "r2")]) == 0
    assert main([*base, "--results", str(tmp_path / "r2")]) == 0
    assert "already evaluated" in capsys.readouterr().out
    assert main([*base[:2], str(tmp_path / "nowhere"), *base[3:], "--results", str(tmp_path / "r3")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"segbench evaluate: error: --pred {tmp_path / 'nowhere'}: not a folder"
    assert main(["ensemble", "--results", str(tmp_path / "r2"), "--quiet"]) == 2  # evaluations only
    assert "nothing to ensemble (no finished training run)" in capsys.readouterr().err


def test_tiff_stacks_with_spacing_and_4d_nifti_probabilities(tmp_path: Path) -> None:
    """3D TIFF stacks take ``--spacing`` (HD95 as MONAI); a 4D NIfTI (x, y, z, C) is probabilities."""
    import tifffile

    shape, spacing = (8, 12, 10), (2.0, 0.5, 0.5)
    gt = _blob(shape, (4, 6, 5), (2, 4, 3))
    pred = _blob(shape, (4, 7, 5), (2, 4, 4))
    for d in ("gt", "pred", "gtn", "predn"):
        (tmp_path / d).mkdir()
    tifffile.imwrite(tmp_path / "gt" / "v.tif", gt.astype(np.uint8) * 255)
    tifffile.imwrite(tmp_path / "pred" / "v.tif", pred.astype(np.uint8))
    argv = ["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--name", "t", "--workers", "1"]
    assert _cli([*argv, "--spacing", "2,0.5,0.5", "--results", str(tmp_path / "r")]) == 0
    (case,) = _record(tmp_path / "r")["cases"]
    assert case["hd95"] == pytest.approx(_monai(pred, gt, spacing=spacing)["hd95"], rel=1e-6)
    _save_nifti(tmp_path / "gtn" / "v.nii.gz", gt.astype(np.uint8), spacing)
    fg = np.where(pred, 0.9, 0.2).astype(np.float32)
    _save_nifti(tmp_path / "predn" / "v.nii", np.stack([1 - fg, fg], axis=-1), spacing)
    argv = ["--pred", str(tmp_path / "predn"), "--gt", str(tmp_path / "gtn"), "--name", "n", "--workers", "1"]
    assert _cli([*argv, "--results", str(tmp_path / "s")]) == 0
    (prob_case,) = _record(tmp_path / "s")["cases"]
    assert prob_case["brier"] == pytest.approx(float(np.mean((fg - gt) ** 2)), abs=1e-6)
    assert {k: v for k, v in prob_case.items() if k not in ("ece", "brier")} == case


# ---- constant baselines and degenerate predictions -----------------------------------------


def test_constant_baseline_scores_one_label_everywhere(tmp_path: Path) -> None:
    """``--constant foreground``: label 1 everywhere, scored like any prediction against each case
    (Dice as MONAI's), recorded as ``baseline: "constant"`` and stated degenerate on every case."""
    from datamodules import create_datamodule

    base = ["--dataset", "synthetic_vessels", "--dataset-arg", "num_test=3", "--workers", "1"]
    assert _cli([*base, "--constant", "foreground", "--results", str(tmp_path / "fg")]) == 0
    rec = _record(tmp_path / "fg")
    assert rec["baseline"] == "constant" and rec["method"] == "all foreground"
    assert rec["config"]["source"]["constant"] == 1 and rec["config"]["split"] == "test"
    dm = create_datamodule("synthetic_vessels", num_test=3)
    dm.setup("test")
    ids = sorted(dm.good_case_ids("test"))
    assert [c["case_id"] for c in rec["cases"]] == ids
    assert rec["degenerate"] == {"kind": "all-foreground", "cases": ids}
    for case in rec["cases"]:
        gt = dm.case(case["case_id"]).label
        assert case["dice"] == pytest.approx(_monai(np.ones_like(gt), gt)["dice"], abs=1e-6)
    assert _cli([*base, "--constant", "background", "--results", str(tmp_path / "bg")]) == 0
    rec = _record(tmp_path / "bg")
    assert rec["method"] == "all background" and rec["degenerate"]["kind"] == "all-background"
    assert all(c["dice"] == 0.0 and c["hd95"] == float("inf") and c["nsd"] == 0.0 for c in rec["cases"])
    assert _cli([*base, "--constant", "1", "--results", str(tmp_path / "fg")]) == 0  # the same record
    assert len(list((tmp_path / "fg").glob("eval__*.json"))) == 1
    assert _cli([*base, "--constant", "1", "--split", "all", "--results", str(tmp_path / "all")]) == 0
    rec = _record(tmp_path / "all")
    every = sorted({c for s in ("train", "val", "test") for c in dm.splits[s]})
    assert [c["case_id"] for c in rec["cases"]] == every and rec["config"]["split"] == "all"
    with pytest.raises(ValueError, match="labels are 0..1"):
        _cli([*base, "--constant", "2"])
    with pytest.raises(ValueError, match="do not pass --pred"):
        _cli([*base, "--constant", "foreground", "--pred", str(tmp_path)])
    with pytest.raises(ValueError, match="--constant needs --dataset"):
        _cli(["--constant", "foreground", "--pred", str(tmp_path), "--gt", str(tmp_path)])


def test_constant_predictions_make_the_record_degenerate(tmp_path: Path) -> None:
    """An evaluation whose predictions are constant on more than half of its cases states it;
    exactly half does not."""
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    for cid in ("a", "b", "c", "d"):
        _png(gt_dir / f"{cid}.png", _square())
    _png(pred_dir / "a.png", _square(lo=4))
    _png(pred_dir / "b.png", np.ones((12, 12), np.uint8))  # all foreground
    argv = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--name", "m", "--workers", "1"]
    argv += ["--missing", "empty"]  # c, d: scored as all background
    _cli([*argv, "--results", str(tmp_path / "r")])
    assert _record(tmp_path / "r")["degenerate"] == {"kind": "all-background", "cases": ["b", "c", "d"]}
    _png(pred_dir / "b.png", _square(lo=2))
    _cli([*argv, "--results", str(tmp_path / "half")])  # 2 of 4 constant
    assert "degenerate" not in _record(tmp_path / "half")
