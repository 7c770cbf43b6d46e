"""case_metrics' speed paths: clDice in a forked child, joint crop, two-channel argmax."""

import os

import numpy as np
import pytest
from scipy import ndimage

from bench.metrics import (
    MetricSettings,
    _parallel,
    betti_errors,
    brier_score,
    case_metrics,
    cldice,
    dice,
    expected_calibration_error,
    hd95,
    iou,
    normalized_surface_dice,
)
from bench.metrics.catalog import cldice as cldice_module

CAN_FORK = _parallel.fork_enabled(_parallel.MIN_VOXELS)


def _sparse_pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blobby masks in a corner (one touches the image border), and a foreground probability."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random(shape), 1.5)
    corner = np.zeros(shape, bool)
    corner[tuple(slice(0, s // 2) for s in shape)] = True
    g = (noise > 0.52) & corner
    prob = np.clip(0.5 + 20 * (noise - 0.515), 0, 1).astype(np.float32) * corner
    return prob > 0.5, g, prob


@pytest.mark.parametrize("shape", [(40, 36), (20, 18, 22)])
def test_crop_and_two_channel_path_equal_public_functions(shape):
    p, g, prob = _sparse_pair(shape)
    sp = (0.7, 1.3, 2.1)[: len(shape)]
    two, g8 = np.stack([1 - prob, prob]), g.astype(np.uint8)
    out = case_metrics(two, g8, spacing=sp, settings=MetricSettings(betti_patch=7), parallel=False)
    ref = {"dice": float(dice(p, g)), "iou": float(iou(p, g)), "cldice": cldice(p, g)}
    ref.update(betti_errors(p, g))
    ref["hd95"] = hd95(p, g, spacing=sp)
    ref["nsd"] = normalized_surface_dice(p, g, 1.0, spacing=sp)
    ref.update({k: v for k, v in betti_errors(p, g, patch=7).items() if k.endswith("_patch")})
    ref["ece"] = expected_calibration_error(prob, g.astype(np.uint8))
    ref["brier"] = brier_score(prob, g.astype(np.uint8))
    assert set(out) == set(ref)
    assert out == ref  # bit-identical, not approximately equal


def test_two_channel_ties_go_to_background():
    prob = np.full((2, 6, 6), 0.5, np.float32)
    prob[1, :3] = 0.75
    prob[0, :3] = 0.25
    gt = np.zeros((6, 6), np.int64)
    gt[:3] = 1
    assert case_metrics(prob, gt)["dice"] == 1.0


@pytest.mark.skipif(not CAN_FORK, reason="needs Linux fork and >= 2 cores")
@pytest.mark.parametrize("children", [1, 2])
def test_forked_child_gives_in_process_values(children, monkeypatch):
    p, g, prob = _sparse_pair((24, 24, 24), seed=1)
    two, g8 = np.stack([1 - prob, prob]), g.astype(np.uint8)
    monkeypatch.setattr(_parallel, "MIN_VOXELS", 0)
    monkeypatch.setattr(_parallel, "max_children", lambda: children)
    monkeypatch.setattr(cldice_module, "max_children", lambda: children)
    assert _parallel.submit(os.getpid, n_voxels=1)() != os.getpid()  # really another process
    started: list[bool] = []

    def spy(fn, *args, n_voxels, parallel):
        started.append(parallel and _parallel.fork_enabled(n_voxels))
        return _parallel.submit(fn, *args, n_voxels=n_voxels, parallel=parallel)

    monkeypatch.setattr(cldice_module, "submit", spy)
    forked = case_metrics(two, g8, include_background=True)
    assert started and all(started)  # every skeleton went to a child
    assert _parallel.submit(os.getpid, n_voxels=1, parallel=False)() == os.getpid()
    started.clear()
    assert case_metrics(two, g8, include_background=True, parallel=False) == forked
    assert started and not any(started)


def _fails(x: int) -> int:
    raise ValueError(f"bad {x}")


@pytest.mark.skipif(not CAN_FORK, reason="needs Linux fork and >= 2 cores")
def test_child_error_is_raised_in_process(monkeypatch):
    monkeypatch.setattr(_parallel, "MIN_VOXELS", 0)
    wait = _parallel.submit(_fails, 3, n_voxels=1)
    with pytest.raises(ValueError, match="bad 3"):
        wait()


def test_small_inputs_stay_in_process():
    assert not _parallel.fork_enabled(_parallel.MIN_VOXELS - 1)
    assert _parallel.submit(os.getpid, n_voxels=100)() == os.getpid()


_PARENT = os.getpid()


def _hangs_in_child() -> int:
    if os.getpid() != _PARENT:
        import time

        time.sleep(60)
    return os.getpid()


@pytest.mark.skipif(not CAN_FORK, reason="needs Linux fork and >= 2 cores")
def test_hung_child_is_killed_and_the_work_redone_in_process(monkeypatch):
    monkeypatch.setattr(_parallel, "MIN_VOXELS", 0)
    monkeypatch.setattr(_parallel, "TIMEOUT_BASE_S", 0.5)
    monkeypatch.setattr(_parallel, "TIMEOUT_PER_MVOXEL_S", 0.0)
    assert _parallel.submit(_hangs_in_child, n_voxels=1)() == os.getpid()
