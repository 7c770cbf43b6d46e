"""Betti numbers against gudhi, known shapes, Betti errors and clDice against the paper."""

import numpy as np
import pytest
from metric_shapes import crossing_vessels_2d, hollow_sphere, ring, solid_torus, vessel_3d
from scipy import ndimage

from bench.metrics import betti_errors, betti_numbers, cldice
from bench.metrics.topology import skeleton
from bench.perf.references import gudhi_betti, paper_cldice


def _random_masks(seed: int, n: int, ndim: int):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        shape = tuple(rng.integers(1, 10 if ndim == 3 else 16, ndim))
        mask = rng.random(shape) < rng.uniform(0.1, 0.9)
        if rng.random() < 0.5:  # smoother, structured blobs
            mask = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.5
        yield mask


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dual", [False, True])
def test_betti_equal_to_gudhi_random(ndim, dual):
    conn = {(2, False): None, (3, False): None, (2, True): 4, (3, True): 6}[(ndim, dual)]
    for mask in _random_masks(ndim * 10 + dual, 60, ndim):
        assert betti_numbers(mask, connectivity=conn) == gudhi_betti(mask, dual=dual), mask.shape


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (ring(), (1, 1)),
        (solid_torus(), (1, 1, 0)),
        (hollow_sphere(), (1, 0, 1)),
        (crossing_vessels_2d(), (1, 0)),
        (vessel_3d(), (1, 0, 0)),
        (np.zeros((6, 6), bool), (0, 0)),
        (np.ones((4, 5, 6), bool), (1, 0, 0)),
    ],
)
def test_known_shapes(mask, expected):
    assert betti_numbers(mask) == expected
    assert gudhi_betti(mask) == expected


def test_connectivity_conventions_diagonal():
    diag = np.eye(4, dtype=bool)
    assert betti_numbers(diag) == (1, 0)  # 8-connected foreground
    assert betti_numbers(diag, connectivity=4) == (4, 0)
    diamond = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], bool)
    assert betti_numbers(diamond) == (1, 1)  # background 4-connected: centre is a hole
    assert betti_numbers(diamond, connectivity=4) == (4, 0)
    with pytest.raises(ValueError, match="connectivity"):
        betti_numbers(diag, connectivity=18)


def test_interrupted_vessel_raises_beta0_error_by_one():
    gt = crossing_vessels_2d()
    pred = gt.copy()
    pred[:, 5:8] = False  # cut the horizontal vessel (left end becomes a separate piece)
    assert betti_errors(pred, gt)["betti0_err"] == 1
    assert betti_errors(gt, gt) == {"betti0_err": 0.0, "betti1_err": 0.0}
    gt3, pred3 = vessel_3d(), vessel_3d()
    pred3[10:12] = False
    assert betti_errors(pred3, gt3) == {"betti0_err": 1.0, "betti1_err": 0.0, "betti2_err": 0.0}


def test_patch_errors_cover_border_patches():
    gt = np.zeros((10, 10), bool)
    pred = gt.copy()
    pred[9, 9] = True  # only in the small border patch
    out = betti_errors(pred, gt, patch=4)  # 3 x 3 patches, last row/column 2 wide
    assert out["betti0_err"] == 1
    assert out["betti0_err_patch"] == pytest.approx(1 / 9)
    assert betti_errors(pred, gt, patch=(4, 10))["betti0_err_patch"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="patch"):
        betti_errors(pred, gt, patch=(4, 4, 4))


def test_patch_is_independent_image():
    ring_mask = ring(20, 8, 4)
    out = betti_errors(ring_mask, np.zeros_like(ring_mask), patch=10)
    per_patch = [betti_numbers(ring_mask[i : i + 10, j : j + 10]) for i in (0, 10) for j in (0, 10)]
    assert out["betti0_err_patch"] == pytest.approx(np.mean([b[0] for b in per_patch]))
    assert out["betti1_err_patch"] == pytest.approx(np.mean([b[1] for b in per_patch]))


def test_cldice_equal_to_paper_random():
    rng = np.random.default_rng(7)
    for i in range(30):
        ndim = 2 + i % 2
        shape = tuple(rng.integers(6, 28 if ndim == 2 else 14, ndim))
        p = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.5
        g = ndimage.gaussian_filter(rng.random(shape), 1.0) > 0.5
        ours, ref = cldice(p, g), paper_cldice(p, g)
        assert (np.isnan(ours) and np.isnan(ref)) or ours == pytest.approx(ref, abs=1e-12)


def test_skeleton_crop_equals_full_image():
    for mask in (solid_torus(), hollow_sphere(), ring(), crossing_vessels_2d()):
        from skimage.morphology import skeletonize

        np.testing.assert_array_equal(skeleton(mask), skeletonize(mask).astype(bool))


def test_cldice_known_and_empty_rules():
    v = crossing_vessels_2d()
    assert cldice(v, v) == 1.0
    z = np.zeros_like(v)
    assert np.isnan(cldice(z, z))
    assert cldice(v, z) == 0.0 and cldice(z, v) == 0.0
    cube = np.zeros((6, 6, 6), bool)
    cube[2:4, 2:4, 2:4] = True  # Lee thinning removes it entirely
    assert not skeleton(cube).any()
    assert cldice(cube, cube) == 1.0  # falls back to the mask as skeleton
    half = cube.copy()
    half[2] = False
    assert cldice(half, cube) == pytest.approx(paper_cldice(half, cube))


def test_topology_input_validation():
    with pytest.raises(ValueError, match="mask"):
        betti_numbers(np.zeros(5))
    with pytest.raises(ValueError, match="binary"):
        betti_numbers(np.full((3, 3), 0.5))
    with pytest.raises(ValueError, match="same shape"):
        cldice(np.zeros((3, 3)), np.zeros((3, 4)))
