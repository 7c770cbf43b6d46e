"""Datasets declared by their files (issue 26): ``nnunet_raw`` (nnU-Net v2 raw, MSD) and
``image_folder``, trained with no Python; a bad ``dataset.json`` or case is one line naming it."""

from __future__ import annotations

import json
import pickle
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from bench.config import ComponentSpec, ConfigError, RunConfig, load_sweep
from bench.run import check_run, resolve_run, run_sweep
from datamodules import CaseLoadError, DatasetFileError, create_datamodule, dataset_class
from datamodules.generic import ImageFolderDataModule, NnunetRawDataModule
from datamodules.readers import MissingExtraError, read_volume
from tests.conftest import tiny_sweep_dict

from .conftest import hippocampus_nnunet, save_nifti, save_png, shared_root, write_nnunet_json

HIPPO_TRAIN = ("001", "003", "004", "006", "007", "008")
HIPPO_TEST = ("011", "017")


def _train(tmp_path: Path, dataset: dict, patch: list[int], **eval_: object):
    """One tiny run of ``dataset`` from a sweep file (no Python), its record."""
    sweep = tiny_sweep_dict(
        name="files",
        datasets=[dataset],
        models=[{"name": "unet", "channels": [4, 8]}],
        data={"batch_size": 2, "patch_size": patch, "samples_per_epoch": 4},
        eval={"sw_batch_size": 4, **eval_},
    )
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    (record,) = run_sweep(load_sweep(path), tmp_path / "results", progress=False)
    assert record.status == "done", record.traceback
    return record


# ---- what must show: real cases, a sweep, classes and channels from the files --------------


def test_nnunet_raw_from_hippocampus_trains_with_no_python(tmp_path, cache_dir):
    root = hippocampus_nnunet(tmp_path / "Dataset004_Hippocampus", HIPPO_TRAIN, HIPPO_TEST)
    record = _train(tmp_path, {"name": "nnunet_raw", "root": str(root), "num_folds": 2}, [16, 16, 16])
    split = record.split
    assert split["class_names"] == ["background", "head", "body"]  # the file's names, not MSD's
    assert (split["spatial_dims"], split["in_channels"], split["channel_names"]) == (3, 1, ["T1"])
    assert split["test_source"] == "official" and split["test"] == ["hippocampus_011", "hippocampus_017"]
    assert [c["case_id"] for c in record.cases] == split["test"]
    assert {"dice_1", "dice_2"} <= set(record.cases[0]) and "dice_3" not in record.cases[0]
    assert record.config["dataset"]["name"] == "nnunet_raw"
    # the same reader as the built-in task: hippocampus_003 loads to the same arrays, bit for bit
    nn = create_datamodule("nnunet_raw", root=root, cache_dir=cache_dir)
    msd = create_datamodule(
        "msd_hippocampus", root=shared_root("MSD_Task04_Hippocampus"), cache_dir=cache_dir
    )
    a = nn.load_case(next(r for r in nn.list_cases() if r.case_id == "hippocampus_003"))
    b = msd.load_case(next(r for r in msd.list_cases() if r.case_id == "hippocampus_003"))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label) and a.spacing == b.spacing


def _chase_folder(dst: Path) -> Path:
    """Crops of real CHASE_DB1 cases as ``images/`` + ``masks/`` and ``test/``: PNG, TIFF and JPEG
    images; 1-bit masks (read as 0/1) and 0/255 masks."""
    src = shared_root("CHASE_DB1")
    box = (400, 380, 560, 524)
    for k, (case, base) in enumerate(
        [("01L", dst), ("01R", dst), ("02L", dst), ("03R", dst), ("11L", dst / "test"), ("12R", dst / "test")]
    ):
        image = Image.open(src / f"Image_{case}.jpg").crop(box)
        mask = Image.open(src / f"Image_{case}_1stHO.png").crop(box)
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "masks").mkdir(parents=True, exist_ok=True)
        image.save(base / "images" / f"Image_{case}{('.png', '.tif', '.jpg')[k % 3]}")
        if k % 2:
            mask = Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255)
        mask.save(base / "masks" / f"Image_{case}.png")
    return dst


def test_image_folder_from_chase_trains_with_no_python(tmp_path, cache_dir):
    root = _chase_folder(tmp_path / "chase")
    record = _train(
        tmp_path, {"name": "image_folder", "root": str(root), "num_folds": 2}, [32, 32], betti_patch=32
    )
    split = record.split
    assert (split["spatial_dims"], split["in_channels"], split["channel_names"]) == (2, 3, ["R", "G", "B"])
    assert split["class_names"] == ["background", "foreground"]
    assert split["test_source"] == "official" and split["test"] == ["Image_11L", "Image_12R"]
    assert [c["case_id"] for c in record.cases] == split["test"] and "dice_1" not in record.cases[0]
    dm = create_datamodule("image_folder", root=root, cache_dir=cache_dir)
    refs = {r.case_id: r for r in dm.list_cases()}
    truth = np.asarray(
        Image.open(shared_root("CHASE_DB1") / "Image_01R_1stHO.png").crop((400, 380, 560, 524))
    )
    raw = dm.read_raw(refs["Image_01R"])  # its mask was saved as 0/255
    assert np.array_equal(raw.label, truth.astype(np.int64)) and raw.image.shape == (3, 144, 160)
    assert np.array_equal(
        dm.read_raw(refs["Image_01L"]).image[:, 0, 0],
        [*Image.open(root / "images/Image_01L.png").getpixel((0, 0))],
    )


# ---- a bad dataset.json is one line naming the key ---------------------------------------

_MSD = {"modality": {"0": "MRI"}, "labels": {"0": "background", "1": "x"}, "training": []}
BAD_JSON = [
    ("not-json", "{", "not a valid dataset.json (JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),  # noqa: E501
    ("no-channel-names", {"channel_names": None}, "missing key 'channel_names' (nnU-Net v2; MSD has 'modality' and 'training')"),  # noqa: E501
    ("channel-names-keys", {"channel_names": {"1": "CT"}}, "key 'channel_names': expected {\"0\": name, \"1\": name, ...} (nnU-Net v2), got {\"1\": \"CT\"}"),  # noqa: E501
    ("no-labels", {"labels": None}, "missing key 'labels' (nnU-Net v2)"),
    ("labels-gap", {"labels": {"background": 0, "a": 2}}, "key 'labels': values must be the integers 0..1, got [0, 2]"),  # noqa: E501
    ("labels-region", {"labels": {"background": 0, "tumour": [1, 2]}}, "key 'labels': 'tumour': region labels (lists) are not supported"),  # noqa: E501
    ("labels-string", {"labels": {"background": 0, "a": "1"}}, "key 'labels': 'a': value '1' is not an integer"),  # noqa: E501
    ("labels-ignore", {"labels": {"background": 0, "ignore": 1}}, "key 'labels': 'ignore': nnU-Net's ignore label is not supported"),  # noqa: E501
    ("no-file-ending", {"file_ending": None}, "missing key 'file_ending' (nnU-Net v2)"),
    ("file-ending", {"file_ending": ".npz"}, "key 'file_ending': '.npz' is not a supported type (.nii.gz, .nii, .mha, .mhd, .nrrd, .nhdr, .png, .tif, .tiff, .jpg, .jpeg, .bmp, .gif)"),  # noqa: E501
    ("msd-no-modality", {**_MSD, "modality": None}, "missing key 'modality' (MSD)"),
    ("msd-labels", {**_MSD, "labels": {"1": "x"}}, "key 'labels': expected {\"0\": \"background\", \"1\": name} (MSD), got {\"1\": \"x\"}"),  # noqa: E501
    ("msd-training", {**_MSD, "training": [{"image": "./imagesTr/a.nii.gz"}]}, "key 'training': entry 0 is not {\"image\": ..., \"label\": ...}: {\"image\": \"./imagesTr/a.nii.gz\"}"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(("row", "content", "message"), BAD_JSON, ids=[r[0] for r in BAD_JSON])
def test_bad_dataset_json_is_one_line_naming_the_key(tmp_path, row, content, message):
    if isinstance(content, str):
        (tmp_path / "dataset.json").write_text(content)
    elif row.startswith("msd"):
        msd = {k: v for k, v in content.items() if v is not None}
        (tmp_path / "dataset.json").write_text(json.dumps(msd))
    else:
        write_nnunet_json(tmp_path, **content)
    with pytest.raises(DatasetFileError) as err:
        NnunetRawDataModule.for_root(tmp_path)
    assert str(err.value) == f"{tmp_path / 'dataset.json'}: {message}"


def test_bad_dataset_json_stops_the_sweep_before_anything_trains(tmp_path, capsys):
    from bench.cli import main

    write_nnunet_json(tmp_path / "data", labels={"background": 0, "a": 2})
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        yaml.safe_dump(tiny_sweep_dict(datasets=[{"name": "nnunet_raw", "root": str(tmp_path / "data")}]))
    )
    assert main(["run", str(sweep), "--results", str(tmp_path / "r"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "dataset.json: key 'labels': values must be the integers 0..1" in err
    )
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").glob("*.json"))


# ---- mismatched pairs and label values: named by file ------------------------------------


def _nnunet_case(
    root: Path, case: str, *, channels=(0,), label: bool = True, value: int = 1, split="Tr"
) -> None:
    lab = np.zeros((6, 5, 4), np.uint8)
    lab[2:4, 2:4, 1:3] = value
    for c in channels:
        save_nifti(
            root / f"images{split}" / f"{case}_{c:04d}.nii.gz", np.full((6, 5, 4), 10.0 + c, np.float32)
        )
    if label:
        save_nifti(root / f"labels{split}" / f"{case}.nii.gz", lab)


def _bad_pairs(root: Path) -> dict[str, str]:
    """One bad case per kind in a two-channel CT dataset; case id -> the expected message."""
    write_nnunet_json(root, channel_names={"0": "CT", "1": "PET"})
    _nnunet_case(root, "ok_1", channels=(0, 1))
    _nnunet_case(root, "ok_2", channels=(0, 1))
    _nnunet_case(root, "no_label", channels=(0, 1), label=False)
    _nnunet_case(root, "no_image", channels=())
    _nnunet_case(root, "gap", channels=(0, 2))
    _nnunet_case(root, "one_channel", channels=(0,))
    _nnunet_case(root, "value_3", channels=(0, 1), value=3)
    save_nifti(root / "imagesTr" / "nosuffix.nii.gz", np.zeros((6, 5, 4), np.float32))
    save_nifti(root / "labelsTr" / "nosuffix.nii.gz", np.zeros((6, 5, 4), np.uint8))
    tr, lab = root / "imagesTr", root / "labelsTr"
    names = "dataset.json declares 2 channel(s): CT, PET"
    return {
        "no_label": f"{tr / 'no_label_0000.nii.gz'}: no label file {lab / 'no_label.nii.gz'}",
        "no_image": f"{lab / 'no_image.nii.gz'}: no image file {tr / 'no_image_0000.nii.gz'}",
        "gap": f"{tr / 'gap_0001.nii.gz'}: missing channel file ({names})",
        "one_channel": f"{tr / 'one_channel_0001.nii.gz'}: missing channel file ({names})",
        "value_3": f"{lab / 'value_3.nii.gz'}: label values [3] outside the expected set 0..2",
        "nosuffix": f"{tr / 'nosuffix.nii.gz'}: no channel suffix "
        "(nnU-Net names images CASE_0000.nii.gz, one per channel)",
    }  # fmt: skip


@pytest.mark.parametrize("case", ["no_label", "no_image", "gap", "one_channel", "value_3", "nosuffix"])
def test_mismatched_pairs_and_label_values_name_the_file(tmp_path, cache_dir, case):
    expected = _bad_pairs(tmp_path / "data")
    dm = create_datamodule("nnunet_raw", root=tmp_path / "data", cache_dir=cache_dir)
    ref = next(r for r in dm.list_cases() if r.case_id == case)
    with pytest.raises(CaseLoadError) as err:
        dm.load_case(ref)
    assert str(err.value) == expected[case]


def test_bad_cases_follow_on_bad_case(tmp_path, cache_dir):
    expected = _bad_pairs(tmp_path / "data")
    dm = create_datamodule("nnunet_raw", root=tmp_path / "data", cache_dir=cache_dir, num_folds=2)
    with pytest.warns(UserWarning, match="skipped"):
        dm.setup()
    assert dm.split_info()["skipped"] == expected  # every bad case, with its one line
    assert dm.case("ok_1").image.shape == (2, 6, 5, 4)
    strict = create_datamodule("nnunet_raw", root=tmp_path / "data", cache_dir=cache_dir, on_bad_case="raise")
    with pytest.raises(CaseLoadError) as err:
        strict.setup()
    assert str(err.value) in expected.values()


def _folder(root: Path, masks: dict[str, np.ndarray], grey: tuple[str, ...] = ()) -> Path:
    for stem, mask in masks.items():
        image = np.full((*mask.shape, 3), 100, np.uint8)
        save_png(root / "images" / f"{stem}.png", image[..., 0] if stem in grey else image)
        save_png(root / "masks" / f"{stem}.png", mask)
    return root


def test_image_folder_mask_values_and_pairs(tmp_path, cache_dir):
    m = np.zeros((8, 8), np.uint8)
    eye = np.eye(8, dtype=np.uint8)
    masks = {"a": eye, "b": 2 * eye, "c": 4 * eye, "d": 128 * eye, "e": 255 * eye, "grey": m}
    root = _folder(tmp_path / "f", masks, grey=("grey",))
    save_png(root / "images" / "lonely.png", np.zeros((8, 8, 3), np.uint8))
    save_png(root / "masks" / "orphan.png", m)
    dm = create_datamodule("image_folder", root=root, cache_dir=cache_dir)
    assert dm.class_names == ("background", "class_1", "class_2") and dm.in_channels == 3
    refs = {r.case_id: r for r in dm.list_cases()}
    assert np.array_equal(dm.read_raw(refs["e"]).label, np.eye(8, dtype=np.int64))  # 255 -> 1
    masks, images = root / "masks", root / "images"
    binary = "(a binary mask holds 0/255 or 0/1)"
    expected = {
        "c": f"{masks / 'c.png'}: mask values [0, 4] are not consecutive labels 0..2 {binary}",
        "d": f"{masks / 'd.png'}: mask values [0, 128] are not consecutive labels 0..2 {binary}",
        "grey": f"{images / 'grey.png'}: a grey image (1 channel(s)); the dataset's images have 3",
        "lonely": f"{images / 'lonely.png'}: no mask {masks / 'lonely'}.* for this image",
        "orphan": f"{masks / 'orphan.png'}: no image {images / 'orphan'}.* for this mask",
    }  # fmt: skip
    for case, message in expected.items():
        with pytest.raises(CaseLoadError) as err:
            dm.load_case(refs[case])
        assert str(err.value) == message


def test_image_folder_layout_errors(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetFileError, match=re.escape(f"{tmp_path}: no masks/ folder")):
        ImageFolderDataModule.for_root(tmp_path)
    with pytest.raises(ValueError, match="image_folder: `root` is required"):
        create_datamodule("image_folder")


# ---- what the files declare reaches the runner --------------------------------------------


def _png_nnunet(root: Path) -> Path:
    """A 2D nnU-Net dataset: RGB ``_0000.png`` files (3 channels in one file), PNG labels."""
    write_nnunet_json(root, channel_names={"0": "R", "1": "G", "2": "B"}, labels={"background": 0, "road": 1},
                      file_ending=".png")  # fmt: skip
    rng = np.random.default_rng(0)
    for i in range(4):
        save_png(root / "imagesTr" / f"c{i}_0000.png", rng.integers(0, 255, (20, 24, 3)))
        save_png(root / "labelsTr" / f"c{i}.png", (rng.random((20, 24)) > 0.7).astype(np.uint8))
    return root


def test_dims_channels_and_classes_reach_the_plan(tmp_path, cache_dir):
    root = _png_nnunet(tmp_path / "roads")
    cls = dataset_class("nnunet_raw", {"root": str(root)})
    assert (cls.spatial_dims, cls.in_channels, cls.class_names) == (2, 3, ("background", "road"))
    assert dataset_class("msd_hippocampus", {"root": "/nowhere"}).spatial_dims == 3  # Python-declared
    cfg = RunConfig(
        ComponentSpec("nnunet_raw", {"root": str(root)}), ComponentSpec("unet"), ComponentSpec("dice_ce")
    )
    assert resolve_run(cfg).data.patch_size == (128, 128)  # the 2D default, from the file
    entry = ComponentSpec("nnunet_raw", {"root": str(root), "patch_size": [8, 8, 8]})
    bad = RunConfig(entry, ComponentSpec("unet"), ComponentSpec("dice_ce"))
    with pytest.raises(ConfigError, match=r"\[8, 8, 8\] has 3 entries but dataset 'nnunet_raw' is 2D"):
        resolve_run(bad)
    check_run(resolve_run(cfg))
    dm = create_datamodule(
        "nnunet_raw", root=root, cache_dir=cache_dir, num_folds=2, patch_size=(16, 16), batch_size=2
    )
    dm.setup()
    assert dm.case("c0").image.shape == (3, 20, 24) and dm.split_info()["test_source"] == "held_out"
    again = pickle.loads(pickle.dumps(dm))  # DataLoader workers under spawn, DDP
    assert type(again) is type(dm) and again.splits == dm.splits and again.num_classes == 2
    batch = next(iter(again.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16)


def test_msd_layout_through_nnunet_raw(tmp_path, cache_dir):
    """MSD layout: ``training`` list, ``modality``, labels by number; 4D images hold the channels."""
    entries = []
    for i in range(3):
        img = np.stack([np.full((6, 5, 4), 1.0), np.full((6, 5, 4), 2.0)], -1).astype(np.float32)
        save_nifti(tmp_path / "imagesTr" / f"p_{i}.nii.gz", img, (0.5, 0.5, 3.0))
        lab = np.zeros((6, 5, 4), np.uint8)
        lab[1:3, 1:3, 1:3] = 1 + i % 2
        save_nifti(tmp_path / "labelsTr" / f"p_{i}.nii.gz", lab, (0.5, 0.5, 3.0))
        entries.append({"image": f"./imagesTr/p_{i}.nii.gz", "label": f"./labelsTr/p_{i}.nii.gz"})
    spec = {
        "name": "Prostate",
        "modality": {"0": "T2", "1": "ADC"},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "training": entries,
        "licence": "CC-BY-SA 4.0",
    }
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    dm = create_datamodule("nnunet_raw", root=tmp_path, cache_dir=cache_dir)
    assert (dm.in_channels, dm.channel_names, dm.class_names) == (
        2,
        ("T2", "ADC"),
        ("background", "PZ", "TZ"),
    )
    assert dm.license == "CC-BY-SA 4.0"
    case = dm.load_case(dm.list_cases()[0])
    assert case.image.shape == (2, 6, 5, 4) and case.spacing == (0.5, 0.5, 3.0)


def test_sitk_formats(tmp_path, cache_dir, monkeypatch):
    """``.mha`` through SimpleITK when installed (the ``[sitk]`` extra); without it, one line naming
    the extra."""
    root = tmp_path / "mha"
    write_nnunet_json(root, file_ending=".mha")
    try:
        import SimpleITK as sitk
    except ImportError:
        sitk = None
    if sitk is not None:
        vol = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)  # (x, y, z)
        img = sitk.GetImageFromArray(vol.transpose(2, 1, 0))  # SimpleITK arrays are (z, y, x)
        img.SetSpacing((0.5, 0.6, 2.0))
        for sub in ("imagesTr", "labelsTr"):
            (root / sub).mkdir()
        sitk.WriteImage(img, str(root / "imagesTr" / "a_0000.mha"))
        lab = sitk.GetImageFromArray((vol.transpose(2, 1, 0) % 3).astype(np.uint8))
        sitk.WriteImage(lab, str(root / "labelsTr" / "a.mha"))
        dm = create_datamodule("nnunet_raw", root=root, cache_dir=cache_dir)
        raw = dm.read_raw(dm.list_cases()[0])
        assert np.array_equal(raw.image[0], vol) and raw.spacing == (0.5, 0.6, 2.0)
        assert "".join(__import__("nibabel").aff2axcodes(raw.affine)) == "LPS"  # ITK's identity direction
        # a rotated .nrrd reads as SimpleITK's own NIfTI of it reads through nibabel (array, affine)
        img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
        img.SetOrigin((10.0, 20.0, 30.0))
        sitk.WriteImage(img, str(tmp_path / "r.nrrd"))
        sitk.WriteImage(img, str(tmp_path / "r.nii.gz"))
        nrrd, nifti = read_volume(tmp_path / "r.nrrd"), read_volume(tmp_path / "r.nii.gz")
        assert np.array_equal(nrrd.array, nifti.array) and np.allclose(nrrd.affine, nifti.affine)
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # not installed
    with pytest.raises(MissingExtraError) as err:
        NnunetRawDataModule.for_root(root)
    assert (
        str(err.value)
        == f"{root / 'imagesTr' / '*.mha'}: reading .mha files needs SimpleITK (pip install 'segbench[sitk]')"
    )


def test_unknown_root_and_copies(tmp_path, cache_dir):
    with pytest.raises(ValueError, match=re.escape(f"nnunet_raw: root {tmp_path / 'nope'} does not exist")):
        NnunetRawDataModule(tmp_path / "nope")
    with pytest.raises(
        DatasetFileError, match=re.escape(f"{tmp_path}: no dataset.json (nnU-Net v2 raw or MSD layout)")
    ):
        NnunetRawDataModule.check_available(tmp_path)
    root = _png_nnunet(tmp_path / "roads")
    shutil.copytree(root / "imagesTr", root / "imagesTs")
    shutil.copytree(root / "labelsTr", root / "labelsTs")
    with pytest.raises(DatasetFileError, match="case 'c0' is also a training case"):
        create_datamodule("nnunet_raw", root=root, cache_dir=cache_dir).list_cases()
