"""Readers and label-map normalisation: formats, gotchas, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from datamodules.readers import (
    CaseLoadError,
    combine_annotators,
    derive_fov,
    integer_label,
    read_binary_label,
    read_image_2d,
    read_stack,
)

from .conftest import fundus_like, save_png


def test_mask_modes_all_read_as_binary(tmp_path):
    mask = np.zeros((6, 7), np.uint8)
    mask[2:4, 3:6] = 1
    pal = Image.fromarray(mask, mode="P")  # DRIVE 2nd observer: palette indices {0, 1} -> grey {3, 253}
    pal.putpalette([3, 3, 3, 253, 253, 253] + [0] * 762)
    pal.save(tmp_path / "p.gif")
    Image.fromarray(mask.astype(bool)).save(tmp_path / "one.png")  # CHASE_DB1: mode "1"
    Image.fromarray(mask * 255).save(tmp_path / "l.gif")
    Image.fromarray(np.repeat((mask * 255)[..., None], 3, -1)).save(tmp_path / "rgb.tif")  # HRF-like RGB TIFF
    for name in ("p.gif", "one.png", "l.gif", "rgb.tif"):
        np.testing.assert_array_equal(read_binary_label(tmp_path / name), mask.astype(np.int64), err_msg=name)
    np.testing.assert_array_equal(read_binary_label(tmp_path / "l.gif", invert=True), 1 - mask)


def test_errors_name_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CaseLoadError, match="broken.png"):
        read_image_2d(tmp_path / "broken.png")
    (tmp_path / "broken.ppm.gz").write_bytes(b"not gzip")
    with pytest.raises(CaseLoadError, match="broken.ppm.gz"):
        read_image_2d(tmp_path / "broken.ppm.gz")
    with pytest.raises(CaseLoadError, match="lab.nii.gz: label holds non-integer"):
        integer_label(np.array([0.0, 0.5]), "lab.nii.gz", 3)
    with pytest.raises(CaseLoadError, match=r"lab.nii.gz: label values \[3\] outside the expected set 0..2"):
        integer_label(np.array([0, 1, 3], np.uint8), "lab.nii.gz", 3)
    np.testing.assert_array_equal(integer_label(np.array([0.0, 2.0], np.float32), "x", 3), [0, 2])


def test_image_depths_and_stacks(tmp_path):
    Image.fromarray(np.array([[0, 1000], [4095, 20]], np.uint16)).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(read_image_2d(tmp_path / "deep.png", "L")[0], [[0, 1000], [4095, 20]])
    rgb, _ = fundus_like(np.random.default_rng(0))
    img = read_image_2d(save_png(tmp_path / "im0001.ppm.gz", rgb))
    assert img.shape == (3, *rgb.shape[:2]) and img.dtype == np.float32
    np.testing.assert_array_equal(img, np.moveaxis(rgb, -1, 0))
    pages = [Image.fromarray(np.full((4, 5), v, np.uint8)) for v in (10, 20, 30)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    stack = read_stack(tmp_path / "stack.tif")
    assert stack.shape == (3, 4, 5) and stack[:, 0, 0].tolist() == [10, 20, 30]


def test_consensus_and_derived_fov():
    a, b, c = (np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]), np.array([1, 1, 1, 0]))
    np.testing.assert_array_equal(combine_annotators([a, b]), [1, 0, 0, 0])  # two: intersection
    np.testing.assert_array_equal(combine_annotators([a, b, c]), [1, 1, 1, 0])  # three: majority
    with pytest.raises(ValueError, match="binary"):
        combine_annotators([a, b], num_classes=3)
    rgb, _ = fundus_like(np.random.default_rng(0), (60, 60))
    fov = derive_fov(np.moveaxis(rgb, -1, 0).astype(np.float32))
    assert fov[30, 30] and not fov[0, 0] and not fov[59, 59]
