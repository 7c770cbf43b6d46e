"""The dataset fingerprint and nnU-Net's planning rules, checked against hand-computed numbers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from datamodules import fingerprint as fpmod
from datamodules.fingerprint import fingerprint, main, patch_size, target_spacing

from .conftest import save_nifti, shared_root, write_nnunet_json

# (case, shape, spacing, x-axis sign, {voxel along x: (label, CT value)})
CASES = [
    ("c1", (8, 8, 2), (1.0, 1.0, 5.0), 1, {0: (1, 10.0), 1: (1, 20.0)}),
    ("c2", (8, 8, 2), (1.0, 1.0, 4.0), -1, {0: (1, 30.0), 1: (2, 40.0)}),
    ("c3", (8, 8, 3), (1.0, 1.0, 6.0), 1, {0: (2, 50.0), 1: (2, 60.0)}),
]


@pytest.fixture
def tiny(tmp_path):
    """Three CT volumes: anisotropic spacing, one flipped affine, six foreground voxels 10..60."""
    root = tmp_path / "Dataset001_Tiny"
    write_nnunet_json(root, channel_names={"0": "CT"}, labels={"background": 0, "a": 1, "b": 2})
    for case, shape, spacing, sign, fg in CASES:
        image, label = np.full(shape, -1000.0, np.float32), np.zeros(shape, np.uint8)
        for x, (lab, value) in fg.items():
            label[x, 0, 0], image[x, 0, 0] = lab, value
        affine = np.diag([sign * spacing[0], sign * spacing[1], spacing[2], 1.0])
        save_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", image, spacing, affine)
        save_nifti(root / "labelsTr" / f"{case}.nii.gz", label, spacing, affine)
    return root


def test_fingerprint_of_a_hand_made_dataset(tiny, tmp_path):
    fp = fingerprint(tiny, cache_dir=tmp_path / "cache", progress=False)
    assert (fp["dataset"], fp["num_cases"], fp["spatial_dims"]) == ("nnunet_raw", 3, 3)
    assert fp["channels"] == ["CT"] and fp["classes"] == ["background", "a", "b"]
    assert fp["shape"] == {"median": [8, 8, 2], "min": [8, 8, 2], "max": [8, 8, 3]}
    assert fp["spacing"] == {"median": [1, 1, 5], "min": [1, 1, 4], "max": [1, 1, 6], "anisotropy": 5.0}
    assert fp["orientation"] == {"RAS": 2, "LPS": 1}
    (ct,) = fp["intensity"]  # foreground 10, 20, ..., 60; the -1000 background is left out
    assert ct["foreground_voxels"] == 6 and (ct["mean"], ct["median"], ct["min"], ct["max"]) == (
        35,
        35,
        10,
        60,
    )
    assert ct["std"] == pytest.approx(np.sqrt(1750 / 6))  # population std, as nnU-Net
    assert ct["percentile_00_5"] == pytest.approx(10.25) and ct["percentile_99_5"] == pytest.approx(59.75)
    total = 128 + 128 + 192
    assert fp["class_frequency"] == [
        {"class": "background", "voxel_share": 442 / total, "cases": 3},
        {"class": "a", "voxel_share": 3 / total, "cases": 2},
        {"class": "b", "voxel_share": 3 / total, "cases": 2},
    ]
    s = fp["suggested"]
    # z is anisotropic (5 > 3 x 1 mm, 2 x 3 < 8 voxels): its 10th percentile of 4, 5, 6 mm = 4.2
    assert s["anisotropic"] and s["spacing"] == pytest.approx([1, 1, 4.2])
    # shapes at 4.2 mm: z = round(2 x 5 / 4.2) = 2, round(2 x 4 / 4.2) = 2, round(3 x 6 / 4.2) = 4
    assert s["median_shape_at_spacing"] == [8, 8, 2]
    assert (s["patch_size"], s["levels"]) == ([8, 8, 2], [1, 1, 0])  # 8 = 4 x 2, 2 cannot halve
    (norm,) = s["normalisation"]
    assert norm["scheme"] == "ct" and norm["clip"] == pytest.approx([10.25, 59.75]) and norm["mean"] == 35


def test_planning_rules_by_hand():
    # a 64-voxel budget: the isotropic-in-mm start round(6.45 x (1, 1, 1/4.2)) = (6, 6, 2) holds 72
    # voxels; the axis largest relative to the median shape (z: 2/2) loses 2**0 voxels
    assert patch_size([1, 1, 4.2], [8, 8, 2], 64) == ([6, 6, 1], [0, 0, 0])
    # the hippocampus: median 36 x 50 x 35 at 1 mm -> 40 x 56 x 40, nnU-Net's own 3d_fullres plan
    assert patch_size([1, 1, 1], [36, 50, 35], 128**3) == ([40, 56, 40], [3, 3, 3])
    # 2D: 960 x 999 fundus under 512**2 -> 512 x 512, five levels
    assert patch_size([1, 1], [960, 999], 512**2) == ([512, 512], [5, 5])
    # isotropic data keeps the median spacing
    spacings = np.array([[0.8, 0.8, 1.0], [0.7, 0.7, 1.2], [0.9, 0.9, 1.1]])
    assert target_spacing(spacings, np.full((3, 3), 100.0)) == ([0.8, 0.8, 1.1], False)
    # anisotropic spacing but as many voxels on z: no change (nnU-Net needs both conditions)
    thick = np.array([[1.0, 1.0, 5.0]] * 3)
    assert target_spacing(thick, np.full((3, 3), 100.0)) == ([1.0, 1.0, 5.0], False)
    # a 10th percentile (of 0.2, 0.2, 5, 5, 5 mm: 0.2) below the other axes' spacing is lifted to it (+1e-5)
    mixed = np.array([[1.0, 1.0, z] for z in (0.2, 0.2, 5.0, 5.0, 5.0)])
    assert target_spacing(mixed, np.array([[64, 64, 8]] * 5))[0] == pytest.approx([1.0, 1.0, 1.00001])


def test_fingerprint_cache_follows_the_files(tiny, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    first = fingerprint(tiny, cache_dir=cache, progress=False)
    assert first["cache_file"].startswith(str(cache)) and os.path.isfile(first["cache_file"])

    def boom(*a, **kw):
        raise AssertionError("recomputed")

    monkeypatch.setattr(fpmod, "compute", boom)
    again = fingerprint(tiny, cache_dir=cache, progress=False, voxel_budget=64)  # from the cache
    assert again["cases"] == first["cases"] and again["suggested"]["patch_size"] == [6, 6, 1]
    label = tiny / "labelsTr" / "c1.nii.gz"
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="recomputed"):  # a file changed: a new digest
        fingerprint(tiny, cache_dir=cache, progress=False)
    monkeypatch.undo()
    monkeypatch.setenv("SEGBENCH_CACHE", str(tmp_path / "env"))
    assert main([str(tiny), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cache_file"].startswith(str(tmp_path / "env" / "fingerprints"))
    assert main([str(tiny)]) == 0
    text = capsys.readouterr().out
    assert "orientation  RAS: 2, LPS: 1" in text and "    patch_size: [8, 8, 2]" in text
    assert "#   normalisation CT: clip to [10.25, 59.75], then (x - 35) / 17.0783" in text


def test_fingerprint_of_a_registered_dataset_reads_raw_intensities(tmp_path, monkeypatch):
    root = shared_root("CHASE_DB1")
    monkeypatch.setenv("SEGBENCH_DATA", str(root.parent))
    fp = fingerprint("chase_db1", cache_dir=tmp_path, progress=False)
    assert fp["num_cases"] == 28 and fp["spatial_dims"] == 2 and len(fp["channels"]) == 3
    assert fp["groups"] == {f"subject_{i:02d}": 2 for i in range(1, 15)}
    red = fp["intensity"][0]
    assert red["min"] >= 0 and red["max"] <= 255 and red["mean"] > 50  # as stored, not z-scored
    vessel = fp["class_frequency"][1]
    assert vessel["cases"] == 28 and 0.02 < vessel["voxel_share"] < 0.2


def test_fingerprint_names_what_it_cannot_read(tmp_path):
    from datamodules import DatasetFileError

    with pytest.raises(DatasetFileError, match="neither a dataset folder nor a registered dataset"):
        fingerprint(tmp_path / "nope")
    with pytest.raises(DatasetFileError, match=r"no dataset.json \(nnunet_raw\) and no images/ \+ masks/"):
        fingerprint(tmp_path)


def test_the_snippet_is_a_live_dataset_entry(tiny, tmp_path):
    """The suggestion's spacing / orientation / intensity are options a sweep accepts (no comments
    left for a volume dataset), with the suggested values."""
    import yaml

    from datamodules import dataset_class

    fp = fingerprint(tiny, cache_dir=tmp_path / "cache", progress=False)
    (entry,) = yaml.safe_load(fpmod.sweep_snippet(fp))["datasets"]
    assert entry["spacing"] == pytest.approx(fp["suggested"]["spacing"])
    assert entry["orientation"] == "RAS"  # two RAS cases and one LPS
    assert entry["intensity"] == "ct"  # the only channel is CT
    kwargs = {k: v for k, v in entry.items() if k != "name"}
    dataset_class(entry["name"], kwargs).check_kwargs(kwargs)  # raises on an unknown or bad option
