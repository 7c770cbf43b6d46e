"""MSD Task04 hippocampus (shared copy: no dataset.json, mixed dtypes) and a dataset.json mini task."""

from __future__ import annotations

import hashlib
import json
import tarfile

import nibabel as nib
import numpy as np
import pytest

from datamodules import create_datamodule

from .conftest import shared_root, train_one_step


def test_msd_hippocampus(cache_dir):
    root = shared_root("MSD_Task04_Hippocampus")
    dm = create_datamodule(
        "msd_hippocampus",
        root=root,
        cache_dir=cache_dir,
        num_folds=5,
        patch_size=(16, 16, 16),
        batch_size=2,
        samples_per_epoch=2,
        limit_cases=3,
    )
    refs = dm.list_cases()
    assert len(refs) == dm.num_cases == 260
    dm.setup()
    full = create_datamodule("msd_hippocampus", root=root, cache_dir=cache_dir, num_folds=5)
    full.setup()
    assert len(full.splits["test"]) == 52 and full.split_info()["test_source"] == "held_out"
    assert (len(full.splits["train"]), len(full.splits["val"])) in ((166, 42), (167, 41))
    for cid in ("hippocampus_003", "hippocampus_243", dm.splits["train"][0]):  # 003 / 243: float labels
        case = full.case(cid)
        assert case.image.ndim == 4 and case.image.shape[0] == 1 and case.image.dtype == np.float32
        assert case.label.shape == case.image.shape[1:] and case.label.dtype == np.int64
        assert set(np.unique(case.label)) == {0, 1, 2}
        assert case.spacing == (1.0, 1.0, 1.0)
        assert abs(float(case.image.mean())) < 1e-3
        # the crops are centred on the hippocampus: its centre of mass lies in the middle of the volume
        com = np.argwhere(case.label > 0).mean(0) / np.array(case.label.shape)
        assert np.all((com > 0.2) & (com < 0.8))
    train_one_step(dm)
    batch = next(iter(dm.val_dataloader()))
    assert batch["spacing"].shape == (1, 3) and batch["image"].ndim == 5


# What the reader before issue 26 (msd.py's own) gave, pinned: sha256 (16 hex digits) of the label
# (int64) and of the image as stored (float32), and two z-scored voxels; the held-out test and the
# fold-0 validation ids of split seed 0 with 5 folds.
_PINS = {
    "hippocampus_003": ("b6e1c9d67253b056", "ae40c91a6a9a79bc", (-0.8176179528236389, 1.2116810083389282)),
    "hippocampus_243": ("8fe63c9e1d10b994", "f3af86a5d0032c77", (0.9442360401153564, 0.8656899929046631)),
    "hippocampus_001": ("a42c363dd861a5c8", "2d4e8efbf9691066", (-0.30120328068733215, 0.25941380858421326)),
}
_TEST_IDS, _VAL_IDS = "e26e42be932ce9ae", "05badfb5e611a14b"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_msd_hippocampus_reads_as_before_the_shared_reader(cache_dir):
    """The task is a declaration over the reader ``nnunet_raw`` uses; its case ids, split and
    arrays are those of the code before (checked bit for bit on all 260 cases when it changed)."""
    from datamodules.splits import load_or_make_split

    dm = create_datamodule("msd_hippocampus", root=shared_root("MSD_Task04_Hippocampus"), cache_dir=cache_dir)
    refs = {r.case_id: r for r in dm.list_cases()}
    assert len(refs) == 260 and all(r.info["problem"] is None for r in refs.values())
    split = load_or_make_split(
        list(refs.values()), name=dm.name, cache_dir=cache_dir, fold=0, num_folds=5, split_seed=0,
        val_fraction=dm.val_fraction, test_fraction=dm.test_fraction,
    )  # fmt: skip
    assert (_sha(",".join(split.test).encode()), _sha(",".join(split.val).encode())) == (_TEST_IDS, _VAL_IDS)
    for cid, (label, image, values) in _PINS.items():
        case, raw = dm.load_case(refs[cid]), dm.read_raw(refs[cid])
        assert (_sha(case.label.tobytes()), _sha(raw.image.tobytes())) == (label, image), cid
        assert [case.image[0, 10, 20, 15], case.image[0, 17, 25, 12]] == pytest.approx(values, abs=1e-6)
        assert case.spacing == (1.0, 1.0, 1.0) and sorted(case.extras) == ["annotator", "label_manual"]


def test_msd_dataset_json_and_spacing(tmp_path, cache_dir):
    task = tmp_path / "Task09_Spleen"
    rng = np.random.default_rng(0)
    entries = []
    for i in range(3):
        for sub in ("imagesTr", "labelsTr"):
            (task / sub).mkdir(parents=True, exist_ok=True)
        img = rng.normal(0, 200, (12, 10, 8)).astype(np.int16)
        lab = np.zeros((12, 10, 8), np.uint8)
        lab[3:7, 3:6, 2:5] = 1
        affine = np.diag([0.8, 0.8, 2.5, 1.0])
        nib.save(nib.Nifti1Image(img, affine), task / "imagesTr" / f"spleen_{i}.nii.gz")
        nib.save(nib.Nifti1Image(lab, affine), task / "labelsTr" / f"spleen_{i}.nii.gz")
        entries.append({"image": f"./imagesTr/spleen_{i}.nii.gz", "label": f"./labelsTr/spleen_{i}.nii.gz"})
    (task / "imagesTr" / "._spleen_0.nii.gz").write_bytes(b"macOS resource fork")
    (task / "dataset.json").write_text(json.dumps({"training": entries[:2]}))
    dm = create_datamodule("msd_spleen", root=tmp_path, cache_dir=cache_dir)
    assert [r.case_id for r in dm.list_cases()] == ["spleen_0", "spleen_1"]  # dataset.json decides
    case = dm.load_case(dm.list_cases()[0])
    np.testing.assert_allclose(case.spacing, (0.8, 0.8, 2.5), rtol=1e-6)
    assert case.label.sum() == 4 * 3 * 3
    (task / "dataset.json").unlink()
    assert [r.case_id for r in dm.list_cases()] == ["spleen_0", "spleen_1", "spleen_2"]  # ._ files ignored


def test_msd_download_from_local_server(server, tmp_path, cache_dir, monkeypatch):
    """The tar is fetched over HTTP, md5-verified, unpacked (one wrapping folder) and indexed."""
    from datamodules.download import Resource
    from datamodules.msd import MsdHippocampusDataModule

    url, srv, log = server
    task = tmp_path / "build" / "Task04_Hippocampus"
    for sub in ("imagesTr", "labelsTr"):
        (task / sub).mkdir(parents=True)
    for i in range(3):
        lab = np.zeros((8, 9, 7), np.uint8)
        lab[2:5, 2:5, 2:4] = i % 2 + 1
        nib.save(
            nib.Nifti1Image(np.ones((8, 9, 7), np.float32) * i, np.eye(4)),
            task / "imagesTr" / f"h_{i}.nii.gz",
        )
        nib.save(nib.Nifti1Image(lab, np.eye(4)), task / "labelsTr" / f"h_{i}.nii.gz")
    with tarfile.open(srv / "Task04_Hippocampus.tar", "w") as tf:
        tf.add(task, arcname="Task04_Hippocampus")
    md5 = hashlib.md5((srv / "Task04_Hippocampus.tar").read_bytes()).hexdigest()
    res = (Resource(url + "Task04_Hippocampus.tar", "Task04_Hippocampus.tar", f"md5:{md5}"),)
    monkeypatch.setattr(MsdHippocampusDataModule, "resources", res)
    root = tmp_path / "MSD_Task04_Hippocampus"
    dm = MsdHippocampusDataModule(root, download=True, cache_dir=cache_dir, num_folds=2)
    dm.setup()
    assert sorted(dm._refs) == ["h_0", "h_1", "h_2"] and log == ["/Task04_Hippocampus.tar"]
    assert MsdHippocampusDataModule(root, download=True, cache_dir=cache_dir).is_present(root)
    MsdHippocampusDataModule(root, download=True, cache_dir=cache_dir, num_folds=2).setup()
    assert log == ["/Task04_Hippocampus.tar"]  # present: nothing fetched again
