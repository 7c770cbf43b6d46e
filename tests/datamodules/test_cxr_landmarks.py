"""Chest X-ray landmarks: rasterised masks and normalised landmarks on the 9 shared JSRT images."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules import create_datamodule
from datamodules.cxr_landmarks import CxrLandmarksDataModule

from .conftest import shared_root, train_one_step


def test_cxr_landmarks(cache_dir):
    root = shared_root("CXR_Landmarks")
    dm = create_datamodule(
        "cxr_landmarks",
        root=root,
        cache_dir=cache_dir,
        num_folds=3,
        batch_size=2,
        samples_per_epoch=2,
        limit_cases=2,
        scale=0.125,
        patch_size=(128, 128),
    )
    refs = dm.list_cases()
    assert len(refs) == 9 and dm.num_cases == 911  # landmark sets; only 9 have an image here
    assert {r.split for r in refs} == {"train"}  # all 9 are in HybridGNet's JSRT training list
    full = create_datamodule("cxr_landmarks", root=root, cache_dir=cache_dir, num_folds=3)
    full.setup()
    assert full.split_info()["test_source"] == "held_out"  # no official test id among the 9
    assert len(full.splits["test"]) == 2 and not set(full.splits["test"]) & set(full.splits["val"])
    assert len(full.splits["val"]) in (2, 3)
    dm.setup()
    case = dm.case(refs[0].case_id)
    assert case.image.shape == (1, 128, 128) and case.label.dtype == np.int64
    assert set(np.unique(case.label)) == set(range(6))
    marks = case.extras["landmarks"]
    assert marks.shape == (166, 2) and marks.dtype == np.float32 and marks.min() >= 0 and marks.max() <= 1
    # image and label line up: the air-filled lungs are darker than the heart
    img = case.image[0]
    assert img[case.label == 1].mean() < img[case.label == 3].mean()
    assert img[case.label == 2].mean() < img[case.label == 3].mean()
    # the right-lung contour (first 44 points) encloses right-lung pixels
    cx, cy = (marks[:44].mean(0) * 128).astype(int)
    assert case.label[cy, cx] in (1, 4)
    batch = next(iter(dm.train_dataloader()))
    assert batch["landmarks"].shape == (2, 166, 2)
    assert batch["landmarks"].min() >= 0 and batch["landmarks"].max() <= 1  # patch = whole image
    train_one_step(dm)
    val = next(iter(dm.val_dataloader()))
    assert val["landmarks"].shape == (1, 166, 2)


def test_cxr_lungs_only_and_dropped_spatial_augmentation(cache_dir):
    root = shared_root("CXR_Landmarks")
    lungs = CxrLandmarksDataModule(root, organs=("RL", "LL"), cache_dir=cache_dir)
    assert len(lungs.list_cases()) == 9
    case = lungs.load_case(lungs.list_cases()[0])
    assert set(np.unique(case.label)) == {0, 1, 2} and case.extras["landmarks"].shape == (94, 2)
    with pytest.warns(UserWarning, match="desynchronise"):
        dm = CxrLandmarksDataModule(root, augment={"flip": 0.5, "noise": 0.2})
    assert dm.augment == {"noise": 0.2}
    with pytest.raises(ValueError, match="organs"):
        CxrLandmarksDataModule(root, organs=("XX",))
