"""HD95 and NSD against MONAI (2D, 3D, anisotropic spacing) and the empty-mask rules."""

import numpy as np
import pytest
from scipy import ndimage

from bench.metrics import hd95, normalized_surface_dice
from bench.perf.references import monai_hd95, monai_nsd


def _pairs(seed: int, n: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        ndim = 2 + i % 2
        shape = tuple(rng.integers(4, 40 if ndim == 2 else 18, ndim))
        smooth = rng.uniform(0, 2)
        p = ndimage.gaussian_filter(rng.random(shape), smooth) > rng.uniform(0.3, 0.7)
        g = ndimage.gaussian_filter(rng.random(shape), smooth) > rng.uniform(0.3, 0.7)
        spacing = tuple(rng.uniform(0.3, 3.0, ndim)) if rng.random() < 0.5 else None
        if p.any() and g.any():
            yield p, g, spacing


def test_hd95_equals_monai():
    for p, g, spacing in _pairs(0, 40):
        assert hd95(p, g, spacing=spacing) == pytest.approx(monai_hd95(p, g, spacing), rel=1e-6)


@pytest.mark.parametrize("tol", [0.0, 1.0, 1.5, 2.0])
def test_nsd_equals_monai(tol):
    for p, g, spacing in _pairs(1, 30):
        assert normalized_surface_dice(p, g, tol, spacing=spacing) == pytest.approx(
            monai_nsd(p, g, tol, spacing), abs=1e-6
        )


def test_known_shift():
    g = np.zeros((20, 20), bool)
    g[5:10, 5:10] = True
    p = np.roll(g, 3, axis=0)
    assert hd95(p, g) == pytest.approx(3.0)
    assert hd95(p, g, spacing=(2.0, 1.0)) == pytest.approx(6.0)
    assert normalized_surface_dice(p, g, 3.0) == 1.0
    assert normalized_surface_dice(p, g, 5.9, spacing=(2.0, 1.0)) < 1.0


def test_mask_touching_border_has_border_edges():
    g = np.ones((6, 6), bool)
    p = g.copy()
    p[:, 5] = False
    assert hd95(p, g) == pytest.approx(monai_hd95(p, g))


def test_empty_rules():
    z = np.zeros((8, 8), bool)
    o = z.copy()
    o[2:4, 2:4] = True
    assert np.isnan(hd95(z, z)) and np.isnan(normalized_surface_dice(z, z, 1.0))
    assert hd95(o, z) == np.inf and hd95(z, o) == np.inf  # MONAI gives NaN here (documented)
    assert np.isnan(monai_hd95(o, z))
    assert normalized_surface_dice(o, z, 1.0) == 0.0 == monai_nsd(o, z, 1.0)


def test_invalid():
    o = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="spacing"):
        hd95(o, o, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="spacing"):
        hd95(o, o, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="tolerance"):
        normalized_surface_dice(o, o, -1.0)
