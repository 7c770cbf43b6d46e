"""ECE against torchmetrics, Brier and reliability-diagram data against direct formulas."""

import numpy as np
import pytest
import torch

from bench.metrics import (
    _binning,
    brier_score,
    calibration_stats,
    expected_calibration_error,
    reliability_diagram,
)
from bench.metrics.calibration import _ece_compute
from bench.perf.references import torchmetrics_ece


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def backend(request, monkeypatch):
    """Runs every calibration test with the numpy passes and with the numba kernel."""
    if request.param == "numba" and _binning._accumulate_numba is None:
        pytest.skip("numba not installed")
    monkeypatch.setattr(_binning, "USE_NUMBA", request.param == "numba")
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_binary_ece_equals_torchmetrics(dtype, n_bins):
    rng = np.random.default_rng(n_bins)
    for shape in [(31, 29), (9, 10, 11)]:
        p = rng.random(shape).astype(dtype)
        p.flat[:5] = [0.0, 1.0, 0.5, 1 / 15, 14 / 15]  # bin edges and both ends
        g = (rng.random(shape) < p).astype(np.int64)
        ours = expected_calibration_error(p, g, n_bins=n_bins)
        assert ours == pytest.approx(torchmetrics_ece(p, g, n_bins), abs=1e-6)


def test_multiclass_top_label_equals_torchmetrics():
    rng = np.random.default_rng(0)
    for c in (2, 3, 5):
        p = np.moveaxis(rng.dirichlet(np.ones(c), size=(13, 17)), -1, 0)
        g = rng.integers(0, c, (13, 17))
        assert expected_calibration_error(p, g) == pytest.approx(torchmetrics_ece(p, g), abs=1e-6)


def test_probability_one_goes_to_own_bin_like_torchmetrics():
    p = np.array([1.0, 1.0, 0.99, 0.99])
    g = np.array([1, 1, 0, 0])
    # torchmetrics: p=1.0 in its own bin (error 0), p=0.99 bin: |0 - 0.99| * 0.5
    assert expected_calibration_error(p, g) == pytest.approx(0.495)
    assert expected_calibration_error(p, g) == pytest.approx(torchmetrics_ece(p, g), abs=1e-7)


def test_fov_mask_restricts_voxels():
    rng = np.random.default_rng(1)
    p, g = rng.random((20, 20)), rng.integers(0, 2, (20, 20))
    m = np.zeros((20, 20), bool)
    m[5:15, 3:12] = True
    assert expected_calibration_error(p, g, mask=m) == pytest.approx(torchmetrics_ece(p[m], g[m]), abs=1e-12)
    assert brier_score(p, g, mask=m) == pytest.approx(np.mean((p[m] - g[m]) ** 2))
    assert np.isnan(expected_calibration_error(p, g, mask=np.zeros_like(m)))


def test_brier_known_values():
    assert brier_score(np.array([0.0, 1.0, 0.5]), np.array([0, 1, 1])) == pytest.approx(0.25 / 3)
    p = np.array([[0.2, 1.0], [0.8, 0.0]])  # (C=2, N=2)
    assert brier_score(p, np.array([1, 0])) == pytest.approx((0.04 + 0.04 + 0) / 2)


def test_reliability_diagram_consistent_with_ece():
    rng = np.random.default_rng(2)
    p = rng.random(5000)
    p[:50] = 1.0
    g = (rng.random(5000) < p).astype(int)
    d = reliability_diagram(p, g, n_bins=10)
    assert d["counts"].sum() == 5000 and d["bin_centers"][0] == pytest.approx(0.05)
    inside = (p >= 0.3) & (p < 0.4)
    assert d["accuracy"][3] == pytest.approx(g[inside].mean())
    assert d["confidence"][3] == pytest.approx(p[inside].mean())


def test_stats_summed_over_cases_give_the_pooled_ece():
    rng = np.random.default_rng(3)
    cases = [(rng.random(100), rng.integers(0, 2, 100)) for _ in range(3)]
    pooled = sum(calibration_stats(p, g, n_bins=15) for p, g in cases)
    p_all, g_all = np.concatenate([c[0] for c in cases]), np.concatenate([c[1] for c in cases])
    assert _ece_compute(pooled) == pytest.approx(expected_calibration_error(p_all, g_all), abs=1e-12)


@pytest.mark.parametrize(
    ("p", "g", "match"),
    [
        (np.array([0.1, np.nan]), np.array([0, 1]), "NaN"),
        (np.array([0.1, np.inf]), np.array([0, 1]), "NaN or inf"),
        (np.array([-0.1, 0.5]), np.array([0, 1]), r"\[0, 1\]"),
        (np.array([0.1, 1.5]), np.array([0, 1]), r"\[0, 1\]"),
        (np.array([0.1, 0.5]), np.array([0, 2]), "target"),
        (np.array([0.1, 0.5]), np.array([0, 1, 1]), "same shape"),
        (np.array([1, 0]), np.array([0, 1]), "floating"),
    ],
)
def test_invalid_inputs(p, g, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(p, g)


def test_accepts_torch():
    p, g = torch.rand(50, dtype=torch.float64), torch.randint(0, 2, (50,))
    assert expected_calibration_error(p, g) == pytest.approx(
        torchmetrics_ece(p.numpy(), g.numpy()), abs=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bin_index_equals_torch_bucketize_at_edges(dtype):
    from bench.metrics._binning import bin_index

    for n_bins in (1, 3, 7, 10, 15, 20, 33, 100):
        edges = torch.linspace(0, 1, n_bins + 1, dtype=dtype)
        near = torch.cat(
            [edges, torch.nextafter(edges, torch.ones_like(edges)), torch.nextafter(edges, -edges)]
        )
        conf = torch.cat([near.clamp(0, 1), torch.rand(2000, dtype=dtype)])
        expected = torch.bucketize(conf, edges, right=True) - 1
        np.testing.assert_array_equal(bin_index(conf.numpy(), edges.numpy()), expected.numpy())


@pytest.mark.parametrize("positive_rate", [0.0, 0.05, 0.95, 1.0])
def test_ece_mostly_hits_or_misses(positive_rate):
    rng = np.random.default_rng(4)
    p = rng.random((40, 40))
    g = (rng.random((40, 40)) < positive_rate).astype(int)
    assert expected_calibration_error(p, g) == pytest.approx(torchmetrics_ece(p, g), abs=1e-12)
