"""Alternative release layouts, built tiny in a temp folder (no shared data needed)."""

from __future__ import annotations

import numpy as np

from datamodules import create_datamodule

from .conftest import fundus_like, save_png


def test_hrf_all_zip_layout(tmp_path, cache_dir):
    rng = np.random.default_rng(0)
    for stem in ("01_h", "02_g", "03_dr"):
        rgb, lab = fundus_like(rng)
        save_png(tmp_path / "images" / f"{stem}.jpg", rgb)
        save_png(tmp_path / "manual1" / f"{stem}.tif", lab)
        save_png(
            tmp_path / "mask" / f"{stem}_mask.tif", np.repeat(((rgb[..., 0] > 50) * 255)[..., None], 3, -1)
        )
    dm = create_datamodule("hrf", root=tmp_path, cache_dir=cache_dir)
    refs = dm.list_cases()
    assert [r.case_id for r in refs] == ["01_h", "02_g", "03_dr"]
    assert [r.info["category"] for r in refs] == ["h", "g", "dr"]
    case = dm.load_case(refs[2])
    assert case.fov.dtype == bool and case.fov.any() and set(np.unique(case.label)) == {0, 1}


def test_drive_grand_challenge_layout_without_test_labels(tmp_path, cache_dir):
    rng = np.random.default_rng(0)
    top = tmp_path / "DRIVE"  # the zip unpacks into one wrapping folder
    for num, part in (("21", "training"), ("22", "training"), ("23", "training"), ("01", "test")):
        rgb, lab = fundus_like(rng)
        save_png(top / part / "images" / f"{num}_{part}.tif", rgb)
        save_png(top / part / "mask" / f"{num}_{part}_mask.gif", (rgb[..., 0] > 50).astype(np.uint8) * 255)
        if part == "training":
            save_png(top / part / "1st_manual" / f"{num}_manual1.gif", lab)
    dm = create_datamodule("drive", root=tmp_path, cache_dir=cache_dir, num_folds=2)
    dm.setup()
    assert sorted(dm._refs) == ["21_training", "22_training", "23_training"]  # unlabelled test left out
    info = dm.split_info()
    assert info["test_source"] == "held_out" and info["test_fraction"] == 0.2 and len(info["test"]) == 1
    assert not set(info["test"]) & set(info["train"] + info["val"])


def test_chase_db1_flat_zip_in_wrapping_folder(tmp_path, cache_dir):
    rng = np.random.default_rng(0)
    for stem in ("Image_01L", "Image_12R"):
        rgb, lab = fundus_like(rng)
        save_png(tmp_path / "CHASEDB1" / f"{stem}.jpg", rgb)
        save_png(tmp_path / "CHASEDB1" / f"{stem}_1stHO.png", lab, mode="1")
    dm = create_datamodule("chase_db1", root=tmp_path, cache_dir=cache_dir)
    refs = {r.case_id: r.split for r in dm.list_cases()}
    assert refs == {"Image_01L": "train", "Image_12R": "test"}
    case = dm.load_case(dm.list_cases()[0])
    assert case.fov is not None and set(np.unique(case.label)) == {0, 1}
    assert "label_2nd" not in case.extras
