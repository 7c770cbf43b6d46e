"""Real retinal datasets in /work/shared/data (DRIVE, CHASE_DB1, HRF, VEVIO) through their DataModules."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules import create_datamodule

from .conftest import ring_contrast, shared_root, train_one_step


def _check_fundus_case(case, shape: tuple[int, ...]) -> None:
    assert case.image.shape == (3, *shape) and case.image.dtype == np.float32
    assert case.label.shape == shape and case.label.dtype == np.int64
    assert set(np.unique(case.label)) == {0, 1}
    assert case.fov is not None and case.fov.dtype == bool and 0.4 < case.fov.mean() < 0.95
    assert 0.02 < case.label[case.fov].mean() < 0.25
    np.testing.assert_allclose(case.image[:, case.fov].mean(1), 0, atol=1e-3)
    # image and label line up: vessels are darker than their surroundings in the green channel,
    # and the contrast disappears when the label is shifted
    green = case.image[1]
    assert ring_contrast(green, case.label, case.fov) < -0.05
    assert ring_contrast(green, case.label, case.fov) < ring_contrast(
        green, np.roll(case.label, 15, 1), case.fov
    )


def test_drive(cache_dir):
    root = shared_root("DRIVE")
    dm = create_datamodule("drive", root=root, cache_dir=cache_dir, num_folds=5)
    dm.setup()
    refs = dm.list_cases()
    assert len(refs) == dm.num_cases == 40
    assert {len(v) for v in (dm.splits["train"], dm.splits["val"])} == {16, 4}
    assert len(dm.splits["test"]) == 20 and all(c.endswith("_test") for c in dm.splits["test"])
    train, test = dm.case(dm.splits["train"][0]), dm.case("01_test")
    for case in (train, test):
        _check_fundus_case(case, (584, 565))
    assert "label_2nd" not in train.extras and "label_2nd" in test.extras
    agreement = (test.extras["label_1st"] == test.extras["label_2nd"])[test.fov].mean()
    assert 0.9 < agreement < 1.0
    cons = create_datamodule("drive", root=root, cache_dir=cache_dir, annotator="consensus")
    c = cons.load_case(next(r for r in refs if r.case_id == "01_test"))
    np.testing.assert_array_equal(c.label, test.extras["label_1st"] & test.extras["label_2nd"])
    small = create_datamodule(
        "drive",
        root=root,
        cache_dir=cache_dir,
        limit_cases=2,
        patch_size=(32, 32),
        batch_size=2,
        samples_per_epoch=2,
    )
    small.setup()
    train_one_step(small)
    batch = next(iter(small.test_dataloader()))
    assert batch["image"].shape == (1, 3, 584, 565) and batch["fov"].shape == (1, 1, 584, 565)


def test_chase_db1(cache_dir):
    dm = create_datamodule("chase_db1", root=shared_root("CHASE_DB1"), cache_dir=cache_dir, num_folds=4)
    dm.setup()
    assert len(dm.list_cases()) == dm.num_cases == 28
    assert len(dm.splits["test"]) == 8 and len(dm.splits["train"]) + len(dm.splits["val"]) == 20
    subjects = {split: {c[6:8] for c in dm.splits[split]} for split in ("train", "val", "test")}
    assert subjects["test"] == {"11", "12", "13", "14"} and not subjects["test"] & subjects["train"]
    assert not subjects["val"] & subjects["train"]  # both eyes of a child share a fold
    case = dm.case("Image_11L")
    _check_fundus_case(case, (960, 999))
    assert {"label_1st", "label_2nd"} <= set(case.extras)
    small = create_datamodule(
        "chase_db1",
        root=shared_root("CHASE_DB1"),
        cache_dir=cache_dir,
        limit_cases=1,
        scale=0.5,
        patch_size=(32, 32),
        batch_size=2,
        samples_per_epoch=2,
    )
    small.setup()
    train_one_step(small)


def test_hrf_glaucoma_subset(cache_dir):
    dm = create_datamodule(
        "hrf",
        root=shared_root("HRF"),
        cache_dir=cache_dir,
        scale=0.125,
        limit_cases=1,
        patch_size=(32, 32),
        batch_size=2,
        samples_per_epoch=2,
    )
    refs = dm.list_cases()
    assert len(refs) == 15 and dm.num_cases == 45  # only the glaucoma third is shared
    assert {r.info["category"] for r in refs} == {"g"}
    dm.setup()
    case = dm.case(dm.splits["train"][0])
    _check_fundus_case(case, (292, 438))
    assert case.spacing == (8.0, 8.0)
    train_one_step(dm)


@pytest.mark.parametrize("subset", ["frames", "mosaics"])
def test_vevio(subset, cache_dir):
    dm = create_datamodule("vevio", root=shared_root("VEVIO"), cache_dir=cache_dir, subset=subset)
    refs = dm.list_cases()
    assert len(refs) == 16
    shapes, contrasts = set(), []
    for ref in refs[::3]:
        case = dm.load_case(ref)
        assert case.fov.dtype == bool and set(np.unique(case.label)) == {0, 1}
        shapes.add(case.image.shape)
        contrasts.append(ring_contrast(case.image[1], case.label, case.fov))
    assert np.median(contrasts) < -0.05
    if subset == "frames":
        assert shapes == {(3, 480, 640)}
        grey_mask = next(r for r in refs if r.case_id == "neo11od1_d")  # one of the non-binary masks
        assert dm.load_case(grey_mask).fov.mean() > 0.3
    else:
        assert len(shapes) > 1  # mosaics differ in size
    both = create_datamodule("vevio", root=shared_root("VEVIO"), cache_dir=cache_dir, subset="both")
    assert len(both.list_cases()) == 32
    both.setup()
    eyes = {split: {c[:-2] for c in both.splits[split]} for split in ("train", "val")}
    assert not eyes["train"] & eyes["val"]
