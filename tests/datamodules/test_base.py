"""Shared DataModule logic on a tiny file-table dataset built in a temp folder."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.readers import CaseLoadError

from .conftest import TableDataModule


def test_load_case_normalises_inside_fov_and_keeps_annotators(make_file_table, cache_dir):
    dm = TableDataModule(make_file_table(), cache_dir=cache_dir)
    case = dm.load_case(dm.list_cases()[0])
    assert case.image.shape == (3, 40, 48) and case.image.dtype == np.float32
    assert case.label.dtype == np.int64 and set(np.unique(case.label)) <= {0, 1}
    assert case.fov.dtype == bool
    np.testing.assert_allclose(case.image[:, case.fov].mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(case.image[:, case.fov].std(1), 1, atol=1e-3)
    assert set(case.extras) >= {"label_a", "label_b", "annotator"}
    np.testing.assert_array_equal(case.label, case.extras["label_a"])
    assert case.extras["annotator"] == "a"


def test_annotator_choice_and_consensus(make_file_table, cache_dir):
    root = make_file_table()
    ref = TableDataModule(root, cache_dir=cache_dir).list_cases()[0]
    b = TableDataModule(root, cache_dir=cache_dir, annotator="b").load_case(ref)
    np.testing.assert_array_equal(b.label, b.extras["label_b"])
    cons = TableDataModule(root, cache_dir=cache_dir, annotator="consensus").load_case(ref)
    np.testing.assert_array_equal(cons.label, cons.extras["label_a"] & cons.extras["label_b"])
    assert cons.extras["annotator"] == "consensus"
    with pytest.raises(ValueError, match="annotator .zz. is unknown"):
        TableDataModule(root, annotator="zz")


def test_folds_disjoint_stable_and_saved_once(make_file_table, cache_dir):
    root = make_file_table(n=10)
    vals, tests = [], []
    for fold in range(4):
        dm = TableDataModule(root, cache_dir=cache_dir, fold=fold, num_folds=4)
        dm.setup()
        assert not set(dm.splits["train"]) & set(dm.splits["val"])
        everything = dm.splits["train"] + dm.splits["val"] + dm.splits["test"]
        assert sorted(everything) == sorted(r.case_id for r in dm.list_cases())
        vals.append(dm.splits["val"])
        tests.append(dm.splits["test"])
    assert len(tests[0]) == 2 and all(t == tests[0] for t in tests)  # 20% held out, same for every fold
    flat = [c for v in vals for c in v]
    assert len(flat) == len(set(flat)) == 8 and not set(flat) & set(tests[0])
    files = list((cache_dir / "splits").glob("*.json"))
    assert len(files) == 1
    again = TableDataModule(root, cache_dir=cache_dir, fold=2, num_folds=4)
    again.setup()
    assert again.splits["val"] == vals[2]
    assert again.split_info()["val"] == vals[2]


def test_bad_case_is_skipped_with_warning_listing_it(make_file_table, cache_dir):
    root = make_file_table(n=6)
    (root / "img_3.png").write_bytes(b"not an image")  # corrupt image
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "lab_4.png")  # size mismatch
    Image.fromarray(np.full((40, 48), 128, np.uint8)).save(root / "lab_5.png")  # mid-grey: not binary
    dm = TableDataModule(root, cache_dir=cache_dir, num_folds=1, batch_size=2, samples_per_epoch=2)
    refs = {r.case_id: r for r in dm.list_cases()}
    with pytest.raises(CaseLoadError, match="img_3.png"):
        dm.load_case(refs["c3"])
    with pytest.raises(CaseLoadError, match="lab_4.png.*does not match"):
        dm.load_case(refs["c4"])
    with pytest.raises(CaseLoadError, match=r"lab_5.png: label values \[128\]"):
        dm.load_case(refs["c5"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup()  # every split is checked at setup, so split_info() is complete before training
    assert set(dm.split_info()["skipped"]) == {"c3", "c4", "c5"}
    assert "lab_4.png" in dm.split_info()["skipped"]["c4"]
    text = " ".join(str(w.message) for w in caught)
    assert all(c in text for c in ("c3", "c4", "c5"))
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16)
    assert not {"c3", "c4", "c5"} & {
        c for split in ("val", "test") for b in dm._dataset(split) for c in [b["case_id"]]
    }
    strict = TableDataModule(root, cache_dir=cache_dir, num_folds=1, on_bad_case="raise")
    with pytest.raises(CaseLoadError):
        strict.setup()


def test_scale_limit_and_loaders(make_file_table, cache_dir):
    dm = TableDataModule(make_file_table(), cache_dir=cache_dir, scale=0.5, limit_cases=2, num_folds=2)
    dm.setup()
    assert all(len(v) <= 2 for v in dm.splits.values())
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape == (1, 3, 20, 24)
    assert batch["label"].shape == batch["fov"].shape == (1, 1, 20, 24)
    assert batch["label"].dtype.is_floating_point is False
    assert batch["spacing"].tolist() == [[2.0, 2.0]]


def test_presence_info_and_default_root(make_file_table, tmp_path, monkeypatch):
    root = make_file_table()
    assert TableDataModule.is_present(root)
    assert not TableDataModule.is_present(tmp_path / "nowhere")
    monkeypatch.setenv("SEGBENCH_DATA", str(tmp_path / "data"))
    assert TableDataModule.default_root() == tmp_path / "data" / "TABLE"
    info = TableDataModule.dataset_info(root)
    assert info["present"] and info["num_cases"] == 6 and info["spatial_dims"] == 2
    with pytest.raises(FileNotFoundError, match="no cases found"):
        TableDataModule(tmp_path / "empty").setup()


def test_every_registered_dataset_declares_its_metadata():
    from datamodules import dataset_entry, list_datasets

    for name in list_datasets():
        cls = dataset_entry(name).factory
        assert cls.task and cls.license, name
        assert len(cls.class_names) == cls.num_classes, name
        assert len(cls.default_patch_size) == cls.spatial_dims, name
        if cls.folder:
            assert cls.num_cases and (cls.resources or cls.download_note), name
            assert isinstance(cls.dataset_info(Path("/nonexistent")), dict)


def test_shared_data_fails_when_env_is_set_and_folder_missing(tmp_path, monkeypatch):
    from .conftest import shared_root

    monkeypatch.setenv("SEGBENCH_SHARED_DATA", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        shared_root("NOPE")
    monkeypatch.delenv("SEGBENCH_SHARED_DATA")
    monkeypatch.setattr(sys.modules[shared_root.__module__], "REPO", tmp_path / "repo")
    with pytest.raises(pytest.skip.Exception, match="absent"):
        shared_root("NOPE")


def test_make_folds_keeps_groups_together():
    from datamodules.splits import make_folds

    pool = [f"s{i // 2}_{'LR'[i % 2]}" for i in range(12)]
    groups = {c: c.split("_")[0] for c in pool}
    folds = make_folds(pool, 3, seed=1, val_fraction=0.2, groups=groups)
    assert sorted(c for f in folds for c in f) == sorted(pool)
    for f in folds:
        assert all(f"{groups[c]}_L" in f and f"{groups[c]}_R" in f for c in f)
    assert make_folds(pool, 3, 1, 0.2, groups) == folds  # stable
