"""Label budgets: the labelled subset of the training cases, reading the others without labels,
and the ``image_u`` patches they give."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import create_datamodule
from datamodules.args import DataArgumentError
from datamodules.cases import Case, CaseRef
from datamodules.synthetic import SyntheticVesselsDataModule, generate_vessels

from .conftest import TableDataModule, shared_root

SMALL = {"size": (40, 40), "num_train": 20, "num_val": 3, "num_test": 3, "patch_size": (24, 24)}
LOADER = {"batch_size": 2, "samples_per_epoch": 6}


class GuardedSynthetic(SyntheticVesselsDataModule):
    """Synthetic cases whose labelled reader refuses any case outside the label budget."""

    name = "guarded_synthetic"

    def load_case(self, ref: CaseRef) -> Case:
        if ref.case_id in self.unlabelled:
            raise RuntimeError(f"label of unlabelled case {ref.case_id} read")
        return super().load_case(ref)

    def load_unlabelled(self, ref: CaseRef) -> Case:
        return super().load_unlabelled(ref)


class OwnReaderSynthetic(SyntheticVesselsDataModule):
    """A dataset that overrides ``load_case`` only: it cannot say how to read a case without labels."""

    name = "own_reader"

    def load_case(self, ref: CaseRef) -> Case:
        return super().load_case(ref)


def _dm(cls=SyntheticVesselsDataModule, cache_dir=None, **kw):
    return cls(cache_dir=cache_dir, **{**SMALL, **LOADER, **kw})


def _batches(dm, n: int = 3) -> list[dict[str, torch.Tensor]]:
    it = iter(dm.train_dataloader())
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("fraction, expected", [(0.1, 2), (0.25, 5), (0.5, 10), (0.01, 1), (0.99, 20)])
def test_subset_size_same_seed_same_subset_and_never_val_or_test(cache_dir, fraction, expected):
    a = _dm(cache_dir=cache_dir, labelled_fraction=fraction, seed=3)
    a.setup("fit")
    b = _dm(cache_dir=cache_dir, labelled_fraction=fraction, seed=3)
    b.setup("fit")
    train = [f"synth_{i:04d}" for i in range(20)]  # the fixed split: the first 20 indices
    info = a.split_info()
    assert info["n_labelled"] == len(info["labelled"]) == expected  # max(1, round(fraction * 20))
    assert info["n_unlabelled"] == 20 - expected and info["labelled_fraction"] == fraction
    assert sorted(info["labelled"] + info["unlabelled"]) == train
    assert not set(info["labelled"]) & set(info["unlabelled"])
    assert not set(info["labelled"] + info["unlabelled"]) & set(info["val"] + info["test"])
    assert info["labelled"] == b.split_info()["labelled"]
    if expected < 20:
        saved = json.loads(Path(info["labelled_file"]).read_text())
        assert saved == {"labelled": info["labelled"], "unlabelled": info["unlabelled"]}
        assert Path(info["labelled_file"]).name == f"synthetic_vessels-fixed.labelled-{fraction:g}-s3.json"


def test_different_seeds_give_different_subsets_drawn_as_documented(cache_dir):
    subsets = []
    for seed in range(6):
        dm = _dm(cache_dir=cache_dir, labelled_fraction=0.25, seed=seed, split_seed=7)
        dm.setup("fit")
        subsets.append(tuple(dm.labelled))
        # the documented draw: the first n of a seeded permutation of the sorted training ids
        ids = sorted(dm.splits["train"])
        order = np.random.default_rng([seed, 7, 0x1AB3]).permutation(len(ids))
        assert list(subsets[-1]) == sorted(ids[i] for i in order[:5])
    assert len(set(subsets)) >= 5  # 15504 subsets of 5 out of 20: six seeds practically never collide


def test_held_out_split_keeps_labelled_subset_inside_train(make_file_table, cache_dir):
    root = make_file_table(n=10)
    dm = TableDataModule(root, cache_dir=cache_dir, labelled_fraction=0.5, num_folds=2, seed=1)
    dm.setup()
    info = dm.split_info()
    assert sorted(info["labelled"] + info["unlabelled"]) == sorted(info["train"])
    assert info["n_labelled"] == max(1, round(0.5 * len(info["train"])))
    assert not set(info["unlabelled"]) & set(info["val"] + info["test"])
    split_file = Path(info["split_file"])
    assert Path(info["labelled_file"]) == split_file.with_name(f"{split_file.stem}.labelled-0.5-s1.json")
    for cid in info["unlabelled"]:
        case = dm.case(cid)
        assert case.extras["unlabelled"] is True and not case.label.any()
        assert not any(k.startswith("label_") for k in case.extras)
    for cid in info["labelled"]:
        assert dm.case(cid).label.any()


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, True, "half"])
def test_bad_labelled_fraction_is_one_line_error_naming_it(bad):
    with pytest.raises(DataArgumentError, match="labelled_fraction") as e:
        SyntheticVesselsDataModule.check_kwargs({"labelled_fraction": bad})
    assert "\n" not in str(e.value)
    with pytest.raises(DataArgumentError, match="train_labels"):
        SyntheticVesselsDataModule(train_labels="sparse")


def test_fraction_one_is_todays_behaviour(cache_dir):
    kw = {"augment": {"flip": 0.5, "rotate_scale": 0.5, "noise": 0.5}, "seed": 5}
    today = _dm(cache_dir=cache_dir, **kw)
    today.setup("fit")
    full = _dm(cache_dir=cache_dir, labelled_fraction=1.0, **kw)
    full.setup("fit")
    assert full.split_info()["unlabelled"] == [] and full.split_info()["labelled_file"] is None
    assert full.split_info()["labelled"] == today.splits["train"]
    assert not list(cache_dir.glob("**/*.labelled-*"))
    for a, b in zip(_batches(today), _batches(full), strict=True):
        assert sorted(a) == sorted(b) == ["image", "label"]
        for key in a:
            assert torch.equal(a[key], b[key])
    # the budget and the label kind never change a case's disk-cache key
    ref = today.case_ref("synth_0000")
    for other in (
        _dm(cache_dir=cache_dir, labelled_fraction=0.3),
        _dm(cache_dir=cache_dir, train_labels="scribble"),
    ):
        assert other.case_key(ref) == today.case_key(ref)
    assert today.case_key(ref, unlabelled=True) != today.case_key(ref)


@pytest.mark.parametrize("disk_cache", [True, False])
def test_unlabelled_cases_never_go_through_load_case(cache_dir, disk_cache):
    dm = _dm(GuardedSynthetic, cache_dir, labelled_fraction=0.1, disk_cache=disk_cache)
    dm.setup("fit")
    assert len(dm.unlabelled) == 18
    batches = _batches(dm, 3)
    for batch in batches:
        assert batch["image_u"].shape == batch["image"].shape == (2, 1, 24, 24)
        assert batch["image_u"].dtype == torch.float32
    uid = sorted(dm.unlabelled)[0]
    case = dm.case(uid)
    truth_image, truth_label = generate_vessels((40, 40), 0, int(uid.split("_")[1]))
    np.testing.assert_array_equal(case.image[0], truth_image)
    assert truth_label.any() and not case.label.any() and case.extras["unlabelled"] is True
    # the guard bites: a module whose unlabelled path reads labels fails
    broken = _dm(GuardedSynthetic, cache_dir / "other", labelled_fraction=0.1, disk_cache=disk_cache)
    broken.load_unlabelled = broken.load_case
    with pytest.raises(RuntimeError, match="label of unlabelled case"):
        broken.setup("fit")


def test_image_u_is_a_patch_of_an_unlabelled_case(cache_dir):
    dm = _dm(cache_dir=cache_dir, labelled_fraction=0.25, samples_per_epoch=8)
    dm.setup("fit")
    images = {c: generate_vessels((40, 40), 0, int(c.split("_")[1]))[0] for c in dm.splits["train"]}

    def source(patch: np.ndarray) -> set[str]:
        found = set()
        for cid, img in images.items():
            for y in range(40 - 24 + 1):
                for x in range(40 - 24 + 1):
                    if np.array_equal(img[y : y + 24, x : x + 24], patch):
                        found.add(cid)
        return found

    used = set()
    for batch in _batches(dm, 4):
        for patch in batch["image_u"][:, 0].numpy():
            found = source(patch)
            assert found and found <= dm.unlabelled
            used |= found
        for patch in batch["image"][:, 0].numpy():
            assert source(patch) <= set(dm.labelled)
    assert len(used) >= 2  # random unlabelled cases, not always the same one


def test_labelled_and_unlabelled_entries_of_one_case_are_kept_apart(cache_dir):
    budget = _dm(cache_dir=cache_dir, labelled_fraction=0.1)
    budget.setup("fit")
    uid = sorted(budget.unlabelled)[0]
    assert not budget.case(uid).label.any()
    full = _dm(cache_dir=cache_dir)  # same cache folder, every case labelled
    full.setup("fit")
    truth = generate_vessels((40, 40), 0, int(uid.split("_")[1]))[1]
    np.testing.assert_array_equal(full.case(uid).label, truth)
    assert "unlabelled" not in full.case(uid).extras
    again = _dm(cache_dir=cache_dir, labelled_fraction=0.1)
    again.setup("fit")
    assert not again.case(uid).label.any()


def test_dataset_without_load_unlabelled_fails_at_setup_naming_the_argument(cache_dir):
    dm = _dm(OwnReaderSynthetic, cache_dir, labelled_fraction=0.5)
    with pytest.raises(DataArgumentError, match=r"own_reader: labelled_fraction=0.5") as e:
        dm.setup("fit")
    assert "\n" not in str(e.value)
    ok = _dm(OwnReaderSynthetic, cache_dir)  # every case labelled: nothing to read without labels
    ok.setup("fit")
    assert "image_u" not in _batches(ok, 1)[0]


def test_chase_db1_unlabelled_image_is_the_labelled_image_and_labels_are_never_opened(cache_dir, monkeypatch):
    import datamodules.cases as cases_module

    root = shared_root("CHASE_DB1")
    dm = create_datamodule("chase_db1", root=root, cache_dir=cache_dir, labelled_fraction=0.25, scale=0.25)
    read_label = cases_module.read_binary_label
    opened: list[str] = []

    def guarded(path, *args, **kwargs):
        opened.append(Path(path).name)
        if any(Path(path).name.startswith(f"{cid}_") for cid in dm.unlabelled):
            raise AssertionError(f"label file {path} of an unlabelled case opened")
        return read_label(path, *args, **kwargs)

    monkeypatch.setattr(cases_module, "read_binary_label", guarded)
    dm.setup("fit")
    info = dm.split_info()
    assert info["n_labelled"] == max(1, round(0.25 * len(info["train"]))) and info["n_unlabelled"] > 0
    assert opened  # the labelled cases' labels were read through the guarded reader
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_u"].shape == (dm.batch_size, 3, *dm.patch_size)
    monkeypatch.setattr(cases_module, "read_binary_label", read_label)
    for uid in sorted(dm.unlabelled)[:2]:
        unlabelled = dm.case(uid)
        labelled = dm.load_case(dm.case_ref(uid))
        assert unlabelled.image.shape == labelled.image.shape == (3, 240, 250)
        np.testing.assert_array_equal(unlabelled.image, labelled.image)
        np.testing.assert_array_equal(unlabelled.fov, labelled.fov)
        assert labelled.label.any() and not unlabelled.label.any()


@pytest.mark.parametrize(
    "name, options",
    [
        ("msd_hippocampus", {}),
        ("msd_hippocampus", {"spacing": [1.5, 1.0, 1.0], "intensity": "ct"}),
        ("nnunet_raw", {"orientation": "RAS", "intensity": "zscore"}),
    ],
)
def test_volume_readers_read_unlabelled_images_only_and_identically(
    name, options, tmp_path, cache_dir, monkeypatch
):
    import datamodules.generic as generic

    from .conftest import hippocampus_nnunet

    if name == "nnunet_raw":
        files = sorted((shared_root("MSD_Task04_Hippocampus") / "imagesTr").glob("hippocampus_*.nii.gz"))
        ids = tuple(f.name[len("hippocampus_") : -len(".nii.gz")] for f in files[:10])
        root = hippocampus_nnunet(tmp_path / "raw", ids)
    else:
        root = shared_root("MSD_Task04_Hippocampus")
    dm = create_datamodule(
        name, root=root, cache_dir=cache_dir, labelled_fraction=0.5, limit_cases=8, num_folds=2, **options
    )
    read_label_map = generic.read_label_map

    def guarded(path, *args, **kwargs):
        if any(Path(path).name.startswith(cid) for cid in dm.unlabelled):
            raise AssertionError(f"label file {path} of an unlabelled case opened")
        return read_label_map(path, *args, **kwargs)

    monkeypatch.setattr(generic, "read_label_map", guarded)
    dm.setup("fit")
    n_train = len(dm.splits["train"])
    assert len(dm.unlabelled) == n_train - max(1, round(0.5 * n_train)) > 0
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_u"].shape == batch["image"].shape
    monkeypatch.setattr(generic, "read_label_map", read_label_map)
    for uid in sorted(dm.unlabelled)[:2]:
        unlabelled, labelled = dm.case(uid), dm.load_case(dm.case_ref(uid))
        np.testing.assert_array_equal(unlabelled.image, labelled.image)
        assert unlabelled.spacing == labelled.spacing and labelled.label.any() and not unlabelled.label.any()
        assert unlabelled.label.shape == labelled.label.shape
