"""Post-processing (``eval.postprocess``) on hand-made label maps with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from models.inference import parse_postprocess, postprocess


def _two_blobs() -> np.ndarray:
    """Class 1: a blob of 5 voxels and one of 9; class 2: blobs of 2 and 4 voxels."""
    m = np.zeros((12, 12), dtype=np.int64)
    m[0, 0:5] = 1  # 5 voxels
    m[4:7, 4:7] = 1  # 9 voxels
    m[10, 0:2] = 2  # 2 voxels
    m[9:11, 8:10] = 2  # 4 voxels
    return m


def test_largest_component_keeps_the_largest_blob_of_each_class() -> None:
    m = _two_blobs()
    out = postprocess(m, 3, "largest_component")
    expected = m.copy()
    expected[0, 0:5] = 0
    expected[10, 0:2] = 0
    np.testing.assert_array_equal(out, expected)
    assert (out == 1).sum() == 9 and (out == 2).sum() == 4
    assert (m == 1).sum() == 14  # the input is not changed


def test_min_size_drops_the_small_blobs_of_each_class() -> None:
    m = _two_blobs()
    out = postprocess(m, 3, "min_size:6")
    assert (out == 1).sum() == 9  # 5 dropped, 9 kept
    assert (out == 2).sum() == 0  # 2 and 4 both under 6
    out = postprocess(m, 3, "min_size:3")
    assert (out == 1).sum() == 14 and (out == 2).sum() == 4  # only the 2-voxel blob goes
    out = postprocess(m, 3, "min_size:5")
    assert (out == 1).sum() == 14  # exactly N voxels stays


def test_none_is_the_identity() -> None:
    m = _two_blobs()
    np.testing.assert_array_equal(postprocess(m, 3, "none"), m)


def test_connectivity_is_full_diagonals_join_in_2d_and_3d() -> None:
    m = np.zeros((5, 5), dtype=np.int64)
    m[0, 0] = m[1, 1] = m[2, 2] = 1  # one diagonal component of 3
    m[4, 4] = 1
    out = postprocess(m, 2, "largest_component")
    assert (out == 1).sum() == 3 and out[4, 4] == 0
    v = np.zeros((4, 4, 4), dtype=np.int64)
    v[0, 0, 0] = v[1, 1, 1] = 1  # corner neighbours: one component in 26-connectivity
    v[3, 3, 3] = 1
    out3 = postprocess(v, 2, "largest_component")
    assert (out3 == 1).sum() == 2 and out3[3, 3, 3] == 0


def test_a_class_does_not_join_another_class() -> None:
    m = np.zeros((3, 7), dtype=np.int64)
    m[1, 0:3] = 1
    m[1, 3] = 2  # touches both class-1 runs
    m[1, 4:6] = 1
    out = postprocess(m, 3, "largest_component")
    assert out[1].tolist() == [1, 1, 1, 2, 0, 0, 0]


@pytest.mark.parametrize("spec", ["biggest", "min_size:0", "min_size:-1", "min_size:x", "min_size:"])
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="min_size:N"):
        parse_postprocess(spec)
