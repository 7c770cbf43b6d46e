"""``segbench multirater`` on two tiny seeds trained on a made-up CHASE_DB1 folder (two annotators):
every per-case metric against numpy written here from the members' own predictions and the raters'
masks, the bootstrap interval against a loop, the markdown against the JSON, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import norm

import bench.cli.protocols  # noqa: F401  (registers the commands)
from bench.cli import main
from bench.config import sweep_from_dict
from bench.evaluate import multirater_eval as mr
from bench.evaluate.predict import find_model, load_model, make_datamodule, predict_case
from bench.run import run_sweep
from tests.conftest import tiny_sweep_dict

SIZE = 48


def _fake_chase(root: Path) -> None:
    """Subjects 01-12, left eye: a bright disk (the derived FOV) with dark lines (vessels); rater
    ``2nd`` marks one more line than ``1st``. Subjects 11-12 are the test split."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disk = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE / 2 - 2) ** 2
    for subject in range(1, 13):
        first = np.zeros((SIZE, SIZE), bool)
        for _ in range(3):
            r = rng.integers(6, SIZE - 6)
            first[r : r + 2, 4:-4] = True
        second = first.copy()
        c = rng.integers(6, SIZE - 6)
        second[4:-4, c : c + 2] = True
        first &= disk
        second &= disk
        img = np.zeros((SIZE, SIZE, 3), np.uint8)
        img[disk] = (200, 120, 60)
        img[first] = (90, 40, 20)
        img[second & ~first] = (140, 80, 40)
        img = np.clip(img.astype(int) + rng.integers(0, 10, img.shape), 0, 255).astype(np.uint8)
        stem = f"Image_{subject:02d}L"
        Image.fromarray(img).save(root / f"{stem}.jpg", quality=95)
        Image.fromarray(first).save(root / f"{stem}_1stHO.png")
        Image.fromarray(second).save(root / f"{stem}_2ndHO.png")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("chase")
    _fake_chase(root)
    results = tmp_path_factory.mktemp("mr-runs")
    sweep = tiny_sweep_dict(
        seeds=[0, 1], datasets=[{"name": "chase_db1", "root": str(root), "download": False}]
    )
    records = run_sweep(sweep_from_dict(sweep), results, progress=False)
    assert all(r.done for r in records), [r.error for r in records]
    return results, [r.run_id for r in records]


@pytest.fixture(scope="module")
def record(seeds) -> tuple[Path, dict]:
    results, ids = seeds
    assert main(["multirater", "--results", str(results), "--runs", *ids, "--quiet"]) == 0
    (path,) = sorted((results / "multirater").glob("*.json"))
    return path, json.loads(path.read_text())


def _ece(conf: np.ndarray, acc: np.ndarray, bins: int) -> float:
    """Top-label ECE by hand: bin b holds conf in [b/bins, (b+1)/bins), conf 1.0 a bin of its own."""
    idx = np.minimum(np.floor(conf * bins).astype(int), bins)
    return sum(abs(acc[idx == b].sum() - conf[idx == b].sum()) for b in range(bins + 1)) / conf.size


def _dice(p: np.ndarray, g: np.ndarray) -> float:
    return 2 * (p & g).sum() / (p.sum() + g.sum())


def _crps(mu: float, sigma: float, y: float) -> float:
    if sigma == 0:
        return abs(y - mu)
    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_every_metric_equals_numpy_from_the_members_and_raters(seeds, record) -> None:
    results, ids = seeds
    _, rec = record
    models = [load_model(find_model(i, results)) for i in ids]
    dm = make_datamodule(models[0])
    dm.setup("test")
    assert sorted(c["case_id"] for c in rec["cases"]) == ["Image_11L", "Image_12L"]
    assert rec["inputs"]["raters"] == ["1st", "2nd"]
    for row in rec["cases"]:
        case = dm.case(row["case_id"])
        fov = np.asarray(case.fov, bool)
        assert 0 < fov.sum() < fov.size  # the region is the derived FOV, not every pixel
        prob = np.mean([predict_case(m, case.image).astype(np.float64) for m in models], axis=0)[:, fov]
        r1 = np.asarray(case.extras["label_1st"])[fov] == 1
        r2 = np.asarray(case.extras["label_2nd"])[fov] == 1
        conf, top = prob.max(0), prob.argmax(0)
        ece1 = _ece(conf, (top == r1).astype(float), 50)
        ece2 = _ece(conf, (top == r2).astype(float), 50)
        assert row["ece_raters"] == pytest.approx((ece1 + ece2) / 2, abs=1e-9)
        soft = np.where(top == 1, (r1.astype(float) + r2) / 2, 1 - (r1.astype(float) + r2) / 2)
        assert row["ece_rater_mean"] == pytest.approx(_ece(conf, soft, 10), abs=1e-9)
        v1, v2 = float(r1.sum()), float(r2.sum())  # spacing 1: volumes are pixel counts
        mu, sd = (v1 + v2) / 2, abs(v1 - v2) / 2
        assert row["crps_volume"] == pytest.approx(_crps(mu, sd, prob[1].sum()), rel=1e-9)
        pm, ps = prob[1].sum(), math.sqrt((prob[1] * (1 - prob[1])).sum())
        assert row["crps_volume_predictive"] == pytest.approx((_crps(pm, ps, v1) + _crps(pm, ps, v2)) / 2)
        pred = top == 1
        assert row["dice_consensus"] == pytest.approx(_dice(pred, r1 & r2))  # two raters: both
        agree = r1 == r2
        assert row["dice_unanimous"] == pytest.approx(_dice(pred & agree, r1 & r2))


def test_interval_is_a_seeded_percentile_bootstrap_of_the_case_mean(record) -> None:
    _, rec = record
    for key, s in rec["summary"].items():
        values = np.array([c[key] for c in rec["cases"]])
        rng = np.random.default_rng(0)
        means = [values[rng.integers(0, values.size, values.size)].mean() for _ in range(2000)]
        assert s["mean"] == pytest.approx(values.mean())
        assert s["n"] == values.size
        # same draws as one (2000, n) matrix: row-wise means, 2.5 and 97.5 percentiles
        rng = np.random.default_rng(0)
        draws = rng.integers(0, values.size, size=(2000, values.size))
        assert [s["low"], s["high"]] == pytest.approx(np.percentile(values[draws].mean(1), [2.5, 97.5]))
        assert min(means) <= s["low"] <= s["mean"] <= s["high"] <= max(means)


def test_markdown_numbers_equal_the_json(record) -> None:
    path, rec = record
    md = path.with_suffix(".md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| metric")]
    assert [r.split("|")[1].strip() for r in rows] == list(rec["summary"]) == list(mr.METRICS)
    for line in rows:
        key, mean, ci, n = (c.strip() for c in line.strip("|").split("|"))
        s = rec["summary"][key]
        assert mean == f"{s['mean']:.4f}"
        assert ci == f"[{s['low']:.4f}, {s['high']:.4f}]"
        assert n == str(s["n"])
    assert "2000 resamples, seed 0" in md


def test_a_one_annotator_dataset_is_one_line(tmp_path, capsys) -> None:
    (rec,) = run_sweep(sweep_from_dict(tiny_sweep_dict()), tmp_path, progress=False)
    assert main(["multirater", "--results", str(tmp_path), "--runs", rec.run_id, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"run {rec.run_id}: its dataset synthetic_vessels has" in err and "two or more" in err
    assert not (tmp_path / "multirater").exists()


def test_bootstrap_of_ten_values_against_a_loop_and_nan_left_out() -> None:
    values = [0.91, 0.5, 0.77, 0.62, 0.88, 0.3, 0.95, 0.7, 0.81, 0.55]
    rng = np.random.default_rng(0)
    draws = rng.integers(0, 10, size=(2000, 10))
    means = [np.mean([values[i] for i in row]) for row in draws]
    want = np.percentile(means, [2.5, 97.5])
    got = mr.bootstrap_ci([*values, math.nan])
    assert got["n"] == 10 and got["mean"] == pytest.approx(np.mean(values))
    assert [got["low"], got["high"]] == pytest.approx(want)
    assert mr.bootstrap_ci([math.nan]) == {"mean": None, "low": None, "high": None, "n": 0}
