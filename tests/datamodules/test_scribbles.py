"""Simulated scribbles (datamodules.scribbles) and training on them through the loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from datamodules.scribbles import simulate_scribbles
from datamodules.synthetic import SyntheticVesselsDataModule, generate_vessels

IGNORE = 255


def _line() -> np.ndarray:
    lab = np.zeros((40, 50), np.int64)
    lab[20, 5:45] = 1  # 40 voxels, its own skeleton
    return lab


def _two_blobs() -> np.ndarray:
    lab = np.zeros((48, 48), np.int64)
    yy, xx = np.mgrid[:48, :48]
    lab[(yy - 12) ** 2 + (xx - 12) ** 2 <= 25] = 1
    lab[(yy - 34) ** 2 + (xx - 32) ** 2 <= 36] = 1
    return lab


def _two_classes() -> np.ndarray:
    lab = np.zeros((48, 56), np.int64)
    lab[8:14, 6:40] = 1
    lab[30:40, 20:30] = 2
    lab[20, 44:54] = 2
    return lab


def _volume() -> np.ndarray:
    lab = np.zeros((24, 28, 28), np.int64)
    lab[4:20, 6:10, 6:10] = 1
    zz, yy, xx = np.mgrid[:24, :28, :28]
    lab[(zz - 12) ** 2 + (yy - 19) ** 2 + (xx - 19) ** 2 <= 16] = 2
    return lab


def _min_distance_to_foreground(points: np.ndarray, label: np.ndarray) -> float:
    """Brute force: the smallest Euclidean distance from any of ``points (N, d)`` to a foreground voxel."""
    fg = np.argwhere(label > 0).astype(float)
    d2 = ((points[:, None, :].astype(float) - fg[None]) ** 2).sum(-1)
    return float(np.sqrt(d2.min()))


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Full-connectivity components, as a person would count separate blobs."""
    return ndimage.label(mask, structure=np.ones((3,) * mask.ndim))


@pytest.mark.parametrize("make, classes", [(_line, 2), (_two_blobs, 2), (_two_classes, 3), (_volume, 3)])
def test_scribbles_carry_true_classes_touch_every_component_and_keep_background_away(make, classes):
    label = make()
    margin = 3.0
    s = simulate_scribbles(label, classes, seed=4, bg_margin=margin)
    assert s.shape == label.shape and s.dtype == np.int64
    assert set(np.unique(s)) <= set(range(classes)) | {IGNORE}
    scribbled = s != IGNORE
    np.testing.assert_array_equal(s[scribbled], label[scribbled])  # every scribble voxel: its true class
    for c in range(1, classes):
        comps, n = _components(label == c)
        assert n >= 1
        for k in range(1, n + 1):
            assert (s[comps == k] == c).any(), f"class {c} component {k} has no scribble"
    bg = np.argwhere(s == 0)
    assert len(bg) > 0  # there is background room farther than the margin in every mask here
    assert _min_distance_to_foreground(bg, label) > margin
    assert scribbled.mean() < 0.5  # sparse: most voxels are ignored


def test_line_keeps_a_contiguous_half_of_its_skeleton():
    s = simulate_scribbles(_line(), 2, seed=0, fg_keep=0.5)
    cols = np.flatnonzero(s[20] == 1)
    assert len(cols) == 20  # ceil(0.5 * 40) skeleton voxels of a one-voxel line
    np.testing.assert_array_equal(cols, np.arange(cols[0], cols[0] + 20))  # one contiguous run
    assert not (s[np.arange(40) != 20] == 1).any()


def test_same_seed_same_scribble_different_seed_different():
    for make, classes in ((_line, 2), (_two_classes, 3), (_volume, 3)):
        label = make()
        a = simulate_scribbles(label, classes, seed=11)
        np.testing.assert_array_equal(a, simulate_scribbles(label, classes, seed=11))
        others = [simulate_scribbles(label, classes, seed=k) for k in range(5)]
        assert any(not np.array_equal(a, o) for o in others)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="ignore_index"):
        simulate_scribbles(_line(), 2, seed=0, ignore_index=1)
    with pytest.raises(ValueError, match="label values"):
        simulate_scribbles(_two_classes(), 2, seed=0)
    with pytest.raises(ValueError, match="fg_keep"):
        simulate_scribbles(_line(), 2, seed=0, fg_keep=0)


SMALL = {
    "size": (40, 40),
    "num_train": 6,
    "num_val": 2,
    "num_test": 2,
    "batch_size": 4,
    "samples_per_epoch": 8,
}


def _truth(case_id: str) -> np.ndarray:
    return generate_vessels((40, 40), 0, int(case_id.split("_")[1]))[1]


@pytest.mark.parametrize("disk_cache", [True, False])
def test_scribble_loader_labels_and_untouched_val_test(cache_dir, disk_cache):
    dm = SyntheticVesselsDataModule(
        cache_dir=cache_dir, train_labels="scribble", patch_size=(24, 24), disk_cache=disk_cache, **SMALL
    )
    dm.setup("fit")
    assert dm.split_info()["train_labels"] == "scribble"
    seen = set()
    for batch in dm.train_dataloader():
        seen |= set(torch.unique(batch["label"]).tolist())
        assert "image_u" not in batch
    assert seen <= {0, 1, IGNORE} and {1, IGNORE} <= seen
    # each case's training label is its scribble: a sparse subset of its true label
    for cid in dm.splits["train"]:
        s = dm.training_scribble(cid)
        truth = _truth(cid)
        keep = s != IGNORE
        np.testing.assert_array_equal(s[keep], truth[keep])
        assert 0 < keep.mean() < 0.5
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        for batch in loader:
            np.testing.assert_array_equal(batch["label"][0, 0].numpy(), _truth(batch["case_id"][0]))


def test_scribbles_depend_on_the_run_seed_not_on_the_disk_cache(cache_dir):
    kw = {**SMALL, "train_labels": "scribble", "patch_size": (24, 24)}
    a = SyntheticVesselsDataModule(cache_dir=cache_dir, seed=1, **kw)
    b = SyntheticVesselsDataModule(cache_dir=cache_dir, seed=1, disk_cache=False, **kw)
    c = SyntheticVesselsDataModule(cache_dir=cache_dir, seed=2, **kw)
    for dm in (a, b, c):
        dm.setup("fit")
    cid = a.splits["train"][0]
    np.testing.assert_array_equal(a.training_scribble(cid), b.training_scribble(cid))
    assert not np.array_equal(a.training_scribble(cid), c.training_scribble(cid))
    for x, y in zip(a.train_dataloader(), b.train_dataloader(), strict=True):
        assert torch.equal(x["label"], y["label"]) and torch.equal(x["image"], y["image"])


def test_oversampled_scribble_patches_hold_scribbled_foreground(cache_dir):
    dm = SyntheticVesselsDataModule(
        cache_dir=cache_dir, train_labels="scribble", patch_size=(8, 8), fg_oversample=1.0, **SMALL
    )
    dm.setup("fit")
    for batch in dm.train_dataloader():
        for lab in batch["label"][:, 0]:
            assert (lab == 1).any()  # centred on a scribbled foreground voxel


def test_padding_and_rotation_fill_scribble_labels_with_ignore(cache_dir, monkeypatch):
    kw = {**SMALL, "size": (20, 20), "patch_size": (28, 28)}
    dm = SyntheticVesselsDataModule(cache_dir=cache_dir, train_labels="scribble", **kw)
    dm.setup("fit")
    for batch in dm.train_dataloader():
        ring = batch["label"][:, 0].clone()
        ring[:, 4:24, 4:24] = -1  # the case sits in the centre, 4 voxels of padding on each side
        assert (ring[ring >= 0] == IGNORE).all()
    dense = SyntheticVesselsDataModule(cache_dir=cache_dir, **kw)
    dense.setup("fit")
    batch = next(iter(dense.train_dataloader()))
    assert (batch["label"][:, 0, :4] == 0).all()  # dense labels are still padded with background
    # rotation: a case labelled 1 everywhere; any 0 in a rotated patch would be filled-in outside
    rot = SyntheticVesselsDataModule(
        cache_dir=cache_dir,
        train_labels="scribble",
        augment={"rotate_scale": 1.0},
        patch_size=(16, 16),
        **SMALL,
    )
    rot.setup("fit")
    monkeypatch.setattr(rot, "training_scribble", lambda cid: np.ones((40, 40), np.uint8))
    values = torch.cat([b["label"].flatten() for b in rot.train_dataloader()])
    assert set(values.unique().tolist()) <= {1, IGNORE} and (values == IGNORE).any()
