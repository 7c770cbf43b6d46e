"""Preprocessing options of the volume DataModules (spacing, orientation, intensity) and the map
back to the file's grid: references are hand-written arrays, nibabel, SciPy and NumPy."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from datamodules import create_datamodule
from datamodules.args import DataArgumentError
from datamodules.generic import NnunetRawDataModule
from datamodules.preprocess import plan_grid, separate_axis
from datamodules.registry import dataset_entry
from tests.datamodules.conftest import save_nifti, shared_root, write_nnunet_json

# voxel axis 0 -> -x (0.8 mm), axis 1 -> +z (3.2 mm), axis 2 -> -y (0.8 mm): permuted, LPS-like, anisotropic
PERMUTED = np.array([[-0.8, 0, 0, 10.0], [0, 0, -0.8, 5.0], [0, 3.2, 0, 1.0], [0, 0, 0, 1]])
ROUND_TRIP_SPACING = (0.7, 0.7, 2.0)
ROUND_TRIP_DICE = 0.97  # docs/preprocessing.md, "Map back"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _nnunet_dataset(root: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]], affine: np.ndarray) -> Path:
    """``cases``: ``{case_id: (image (X, Y, Z), label)}`` as an nnU-Net raw dataset with ``affine``."""
    for cid, (image, label) in cases.items():
        save_nifti(root / "imagesTr" / f"{cid}_0000.nii.gz", image.astype(np.float32), affine=affine)
        save_nifti(root / "labelsTr" / f"{cid}.nii.gz", label.astype(np.uint8), affine=affine)
    write_nnunet_json(root, numTraining=len(cases))
    return root


def _hippocampus_with_affine(root: Path, ids: tuple[str, ...], affine: np.ndarray) -> Path:
    """Real MSD Hippocampus cases rewritten (in ``root``, a temp folder) with another affine."""
    src = shared_root("MSD_Task04_Hippocampus")
    cases = {}
    for n in ids:
        img = np.asarray(nib.load(src / "imagesTr" / f"hippocampus_{n}.nii.gz").dataobj)
        lab = np.asarray(nib.load(src / "labelsTr" / f"hippocampus_{n}.nii.gz").dataobj)
        cases[f"hippocampus_{n}"] = (img, lab)
    _nnunet_dataset(root, cases, affine)
    write_nnunet_json(root, channel_names={"0": "T1"}, labels={"background": 0, "head": 1, "body": 2})
    return root


# ---- nearest-neighbour labels, by hand -----------------------------------------------------------


def test_label_spacing_doubled_keeps_the_higher_voxel_of_each_pair():
    # 4 x 4 x 2, values 0..31 (x * 8 + y * 2 + z); spacing (1, 1, 1) -> (2, 2, 1): shape (2, 2, 2).
    # Voxel centres aligned: new voxel i sits at old coordinate 2 i + 0.5, a tie that takes 2 i + 1.
    label = np.arange(32).reshape(4, 4, 2)
    grid = plan_grid(label.shape, (1.0, 1.0, 1.0), None, target_spacing=(2.0, 2.0, 1.0))
    expected = np.array(
        [
            [[10, 11], [14, 15]],  # x = 1: y = 1, 3
            [[26, 27], [30, 31]],  # x = 3: y = 1, 3
        ]
    )
    assert grid.shape == (2, 2, 2)
    np.testing.assert_array_equal(grid.label(label), expected)
    assert grid.label(label).dtype == label.dtype


def test_label_spacing_halved_repeats_every_voxel():
    # 2 x 2 x 2; spacing (1, 1, 1) -> (0.5, 1, 0.5): x and z doubled, each voxel twice.
    label = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    grid = plan_grid(label.shape, (1.0, 1.0, 1.0), None, target_spacing=(0.5, 1.0, 0.5))
    expected = np.array(
        [
            [[1, 1, 2, 2], [3, 3, 4, 4]],
            [[1, 1, 2, 2], [3, 3, 4, 4]],
            [[5, 5, 6, 6], [7, 7, 8, 8]],
            [[5, 5, 6, 6], [7, 7, 8, 8]],
        ]
    )
    np.testing.assert_array_equal(grid.label(label), expected)
    assert grid.spacing == (0.5, 1.0, 0.5)


# ---- separate z ---------------------------------------------------------------------------------------


def test_separate_axis_follows_nnunet_rule():
    assert separate_axis((1.0, 1.0, 4.0), (1.0, 1.0, 1.0)) == 2  # the current spacing decides first
    assert separate_axis((1.0, 1.0, 1.0), (0.5, 2.0, 0.5)) == 1  # else the target spacing
    assert separate_axis((1.0, 1.0, 3.0), (1.0, 1.0, 3.0)) is None  # ratio 3 is not > 3
    assert separate_axis((4.0, 4.0, 1.0), (1.0, 1.0, 5.0)) is None  # shared largest spacing: none


def test_anisotropic_image_is_linear_in_plane_and_nearest_out_of_plane():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 4, 3, 3)).astype(np.float32)  # (C, X, Y, Z), z is 4 mm
    grid = plan_grid(image.shape[1:], (1.0, 1.0, 4.0), None, target_spacing=(0.5, 0.75, 2.0))
    assert grid.shape == (8, 4, 6)
    out = grid.image(image)[0]

    def centres(n_in: int, n_out: int) -> np.ndarray:  # voxel centres aligned, edges clamped
        return np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)

    xs, ys = centres(4, 8), centres(3, 4)
    z_nearest = [0, 0, 1, 1, 2, 2]  # centres -0.25, 0.25, 0.75, 1.25, 1.75, 2.25 rounded (by hand)
    points = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1)
    expected = np.stack(
        [RegularGridInterpolator((np.arange(4), np.arange(3)), image[0, :, :, z])(points) for z in z_nearest],
        axis=-1,
    )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    # linear along z too would give something else
    zs = centres(3, 6)
    trilinear = RegularGridInterpolator((np.arange(4), np.arange(3), np.arange(3)), image[0])(
        np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), -1)
    )
    assert not np.allclose(out, trilinear, atol=1e-3)


def test_isotropic_image_is_trilinear():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(1, 3, 3, 3)).astype(np.float32)
    grid = plan_grid(image.shape[1:], (1.0, 1.0, 1.0), None, target_spacing=(0.5, 0.5, 0.5))
    c = np.clip((np.arange(6) + 0.5) / 2 - 0.5, 0, 2)
    expected = RegularGridInterpolator((np.arange(3),) * 3, image[0])(
        np.stack(np.meshgrid(c, c, c, indexing="ij"), -1)
    )
    np.testing.assert_allclose(grid.image(image)[0], expected, rtol=1e-5, atol=1e-6)


# ---- orientation ---------------------------------------------------------------------------------------


def test_reorientation_matches_nibabel_canonical_and_maps_back_exactly():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(4, 5, 6)).astype(np.float32)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, PERMUTED))
    grid = plan_grid(data.shape, (0.8, 3.2, 0.8), PERMUTED, orientation="RAS")
    moved = grid.image(data[None])
    np.testing.assert_array_equal(moved[0], canonical.get_fdata(dtype=np.float32))
    assert grid.spacing == pytest.approx(canonical.header.get_zooms()[:3])
    np.testing.assert_array_equal(grid.back(moved)[0], data)
    label = (data > 0).astype(np.int64)
    np.testing.assert_array_equal(
        grid.label(label),
        np.asarray(nib.as_closest_canonical(nib.Nifti1Image(label.astype(np.uint8), PERMUTED)).dataobj),
    )


def test_datamodule_reorients_to_ras_and_maps_back(tmp_path, cache_dir):
    rng = np.random.default_rng(3)
    cases = {f"c{i}": (rng.normal(size=(5, 4, 6)), rng.integers(0, 3, (5, 4, 6))) for i in range(5)}
    root = _nnunet_dataset(tmp_path / "ds", cases, PERMUTED)
    dm = NnunetRawDataModule(root, orientation="RAS", cache_dir=cache_dir, num_folds=1)
    dm.setup("fit")
    cid = dm.splits["test"][0]
    case = dm.case(cid)
    label_file = nib.load(root / "labelsTr" / f"{cid}.nii.gz")
    np.testing.assert_array_equal(case.label, np.asarray(nib.as_closest_canonical(label_file).dataobj))
    assert case.spacing == pytest.approx(nib.as_closest_canonical(label_file).header.get_zooms())
    onehot = np.stack([case.label == k for k in range(3)]).astype(np.float32)
    back = dm.to_original(cid, onehot)
    np.testing.assert_array_equal(back.prob.argmax(0), np.asarray(label_file.dataobj))
    np.testing.assert_array_equal(back.label, np.asarray(label_file.dataobj))
    assert back.spacing == pytest.approx((0.8, 3.2, 0.8))


# ---- round trip on real data ----------------------------------------------------------------------------


def test_round_trip_on_anisotropic_hippocampus_keeps_dice(tmp_path, cache_dir):
    ids = ("001", "003", "004", "006", "007")
    root = _hippocampus_with_affine(tmp_path / "hippo", ids, PERMUTED)
    dm = NnunetRawDataModule(
        root, spacing=list(ROUND_TRIP_SPACING), orientation="RAS", cache_dir=cache_dir, num_folds=1
    )
    dm.setup("fit")
    for cid in dm.splits["train"] + dm.splits["test"]:
        case = dm.case(cid)
        file = nib.load(root / "labelsTr" / f"{cid}.nii.gz")
        truth = np.asarray(file.dataobj).astype(np.int64)
        assert case.spacing == ROUND_TRIP_SPACING and case.label.shape != truth.shape
        onehot = np.stack([case.label == k for k in range(3)]).astype(np.float32)
        back = dm.to_original(cid, onehot)
        assert back.prob.shape == (3, *truth.shape)
        assert back.spacing == pytest.approx(file.header.get_zooms())
        np.testing.assert_array_equal(back.label, truth)
        pred = back.prob.argmax(0)
        for k in (1, 2):
            assert _dice(pred == k, truth == k) >= ROUND_TRIP_DICE, (cid, k)
    image = dm.case(cid).image
    assert dm.map_back(cid, image).shape == (1, *truth.shape)


# ---- CT normalisation -------------------------------------------------------------------------------------


def test_ct_clip_bounds_are_percentiles_of_training_foreground_only(tmp_path, cache_dir):
    rng = np.random.default_rng(4)
    cases = {}
    for i in range(10):
        label = np.zeros((6, 6, 4), np.int64)
        label[1:5, 2:5, 1:3] = 1 + (i % 2)
        image = rng.normal(40 * i, 30, size=label.shape)
        image[0, 0, :2] = (5000, -5000)  # background voxels beyond any foreground percentile: clipped
        cases[f"c{i}"] = (image, label)
    root = _nnunet_dataset(tmp_path / "ct", cases, np.diag([1.0, 1.0, 2.0, 1.0]))
    dm = NnunetRawDataModule(root, intensity="ct", cache_dir=cache_dir, num_folds=1)
    dm.setup("fit")
    train, held = dm.splits["train"], dm.splits["val"] + dm.splits["test"]
    assert train and held

    def foreground(ids: list[str]) -> np.ndarray:
        out = []
        for cid in ids:
            img = np.asarray(nib.load(root / "imagesTr" / f"{cid}_0000.nii.gz").dataobj, dtype=np.float32)
            lab = np.asarray(nib.load(root / "labelsTr" / f"{cid}.nii.gz").dataobj)
            out.append(img[lab > 0])
        return np.concatenate(out).astype(np.float64)

    fg = foreground(train)
    low, high = np.percentile(fg, 0.5), np.percentile(fg, 99.5)
    (stats,) = dm.split_info()["preprocess"]["intensity_stats"]
    assert stats["percentile_00_5"] == pytest.approx(low)
    assert stats["percentile_99_5"] == pytest.approx(high)
    assert stats["mean"] == pytest.approx(fg.mean()) and stats["std"] == pytest.approx(fg.std())
    everything = foreground(train + held)
    assert np.percentile(everything, 99.5) != pytest.approx(high)  # the held-out cases would move it
    cid = dm.splits["test"][0]
    raw = np.asarray(nib.load(root / "imagesTr" / f"{cid}_0000.nii.gz").dataobj, dtype=np.float32)
    expected = (np.clip(raw, low, high) - fg.mean()) / fg.std()
    np.testing.assert_allclose(dm.case(cid).image[0], expected, rtol=1e-4, atol=1e-4)
    assert dm.case(cid).image[0, 0, 0, 0] == pytest.approx((high - fg.mean()) / fg.std(), rel=1e-5)
    assert dm.case(cid).extras["intensity_stats"] == [stats]


def test_ct_cases_of_another_fold_are_normalised_with_its_own_training_cases(tmp_path, cache_dir):
    rng = np.random.default_rng(6)
    cases = {}
    for i in range(10):
        label = np.zeros((6, 6, 4), np.int64)
        label[1:5, 2:5, 1:3] = 1
        cases[f"c{i}"] = (rng.normal(50 * i, 20, size=label.shape), label)
    root = _nnunet_dataset(tmp_path / "ct", cases, np.eye(4))
    images = []
    for fold in (0, 1):  # one cache folder for both: the held-out test cases are the same
        dm = NnunetRawDataModule(root, intensity="ct", cache_dir=cache_dir, num_folds=2, fold=fold)
        dm.setup("fit")
        cid = dm.splits["test"][0]
        fg = []
        for t in dm.splits["train"]:
            img = np.asarray(nib.load(root / "imagesTr" / f"{t}_0000.nii.gz").dataobj, dtype=np.float64)
            fg.append(img[np.asarray(nib.load(root / "labelsTr" / f"{t}.nii.gz").dataobj) > 0])
        fg = np.concatenate(fg)
        raw = np.asarray(nib.load(root / "imagesTr" / f"{cid}_0000.nii.gz").dataobj, dtype=np.float32)
        lo, hi = np.percentile(fg, [0.5, 99.5])
        expected = (np.clip(raw, lo, hi) - fg.mean()) / fg.std()
        np.testing.assert_allclose(dm.case(cid).image[0], expected, rtol=1e-4, atol=1e-4)
        images.append(dm.case(cid).image)
    assert not np.allclose(images[0], images[1])


# ---- defaults and bad values -------------------------------------------------------------------------


def test_without_options_the_case_is_read_as_before(tmp_path, cache_dir):
    rng = np.random.default_rng(5)
    cases = {f"c{i}": (rng.normal(size=(5, 4, 6)), rng.integers(0, 3, (5, 4, 6))) for i in range(5)}
    root = _nnunet_dataset(tmp_path / "ds", cases, PERMUTED)
    dm = NnunetRawDataModule(root, cache_dir=cache_dir, num_folds=1)
    dm.setup("fit")
    assert not dm.maps_back and "preprocess" not in dm.split_info()
    cid = dm.splits["test"][0]
    case = dm.case(cid)
    raw = np.asarray(nib.load(root / "imagesTr" / f"{cid}_0000.nii.gz").dataobj, dtype=np.float32)
    np.testing.assert_allclose(case.image[0], (raw - raw.mean()) / (raw.std() + 1e-8), rtol=1e-5, atol=1e-5)
    assert case.spacing == pytest.approx((0.8, 3.2, 0.8))
    assert set(case.extras) == {"label_manual", "annotator"}


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"spacing": [1.0, 1.0]}, "spacing needs 3 entries"),
        ({"spacing": [1.0, 0.0, 1.0]}, "spacing entries must be numbers > 0"),
        ({"spacing": [1.0, -2, 1.0]}, "spacing entries must be numbers > 0"),
        ({"spacing": "1,1,1"}, "spacing needs 3 entries"),
        ({"spacing": [1.0, 1.0, 1.0], "scale": 0.5}, "spacing cannot be combined with scale"),
        ({"orientation": "LPS"}, "orientation must be None or one of ['RAS']"),
        ({"intensity": "minmax"}, "intensity must be None"),
    ],
)
def test_bad_values_are_one_line_naming_the_argument(kwargs, named, tmp_path):
    for name in ("msd_hippocampus", "msd_spleen"):
        with pytest.raises(DataArgumentError) as err:
            dataset_entry(name).factory.check_kwargs(kwargs)
        assert named in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(DataArgumentError, match=named.split()[0]):
            create_datamodule(name, root=tmp_path, **kwargs)
    write_nnunet_json(tmp_path / "raw")
    with pytest.raises(DataArgumentError, match=named.split()[0]):
        NnunetRawDataModule.for_root(tmp_path / "raw").check_kwargs(kwargs)


def test_an_explicit_window_and_an_intensity_option_exclude_each_other():
    with pytest.raises(DataArgumentError, match="intensity_window cannot be combined with intensity='ct'"):
        dataset_entry("msd_spleen").factory.check_kwargs({"intensity_window": [0, 100], "intensity": "ct"})


def test_orientation_needs_a_3d_dataset(tmp_path):
    write_nnunet_json(tmp_path / "png", file_ending=".png")
    cls = NnunetRawDataModule.for_root(tmp_path / "png")
    with pytest.raises(DataArgumentError, match="orientation needs a 3D dataset"):
        cls.check_kwargs({"orientation": "RAS"})
    cls.check_kwargs({"spacing": [0.5, 0.5]})  # a 2D spacing is fine
    assert json.loads((tmp_path / "png" / "dataset.json").read_text())["file_ending"] == ".png"


def test_msd_task_resamples_and_maps_back_on_the_release(cache_dir):
    root = shared_root("MSD_Task04_Hippocampus")
    dm = create_datamodule(
        "msd_hippocampus", root=root, spacing=[0.5, 0.5, 0.75], limit_cases=2, cache_dir=cache_dir
    )
    dm.setup("fit")
    cid = dm.splits["test"][0]
    case = dm.case(cid)
    file = nib.load(root / "labelsTr" / f"{cid}.nii.gz")
    truth = np.asarray(file.dataobj).astype(np.int64)
    expected_shape = tuple(round(n / s) for n, s in zip(file.shape, (0.5, 0.5, 0.75)))
    assert case.label.shape == expected_shape and case.spacing == (0.5, 0.5, 0.75)
    onehot = np.stack([case.label == k for k in range(3)]).astype(np.float32)
    back = dm.to_original(cid, onehot)
    np.testing.assert_array_equal(back.label, truth)
    for k in (1, 2):
        assert _dice(back.prob.argmax(0) == k, truth == k) >= ROUND_TRIP_DICE
    info = dm.split_info()["preprocess"]
    assert info["test_grid"][cid] == {"shape": list(file.shape), "spacing": [1.0, 1.0, 1.0]}
    assert info["intensity"] is None and info["intensity_stats"] is None
