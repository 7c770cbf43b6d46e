"""The test-metrics callback hands each case's spacing and field of view to the metrics; values
are compared with MONAI's Hausdorff distance computed with the same spacing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance

from bench.run.callbacks import CaseMetricsCallback


class _T:  # the trainer attributes the callback reads
    world_size = 1


def test_spacing_reaches_the_distance_metrics(tmp_path) -> None:
    label = np.zeros((24, 24), dtype=np.int64)
    label[6:12, 6:18] = 1
    pred = np.zeros_like(label)
    pred[8:16, 6:18] = 1
    prob = np.stack([1.0 - pred, pred.astype(float)]).astype(np.float32)
    spacing = [2.5, 0.5]
    cb = CaseMetricsCallback(save_dir=tmp_path / "p" / "run", save_ids={"c0"})
    cb.on_test_epoch_start(None, None)
    outputs = {
        "prob": torch.from_numpy(prob),
        "label": torch.from_numpy(label),
        "fov": None,
        "case_id": "c0",
        "spacing": spacing,
    }
    batch = {"image": torch.zeros(1, 1, 24, 24)}
    cb.on_test_batch_end(None, None, outputs, batch, 0)
    cb.on_test_epoch_end(_T(), None)
    row = cb.rows[0]
    ref = compute_hausdorff_distance(
        torch.from_numpy(pred)[None, None].bool(),
        torch.from_numpy(label)[None, None].bool(),
        percentile=95,
        spacing=spacing,
    ).item()
    assert row["hd95"] == pytest.approx(ref, rel=1e-5)
    unit = compute_hausdorff_distance(
        torch.from_numpy(pred)[None, None].bool(), torch.from_numpy(label)[None, None].bool(), percentile=95
    ).item()
    assert abs(ref - unit) > 0.5  # the spacing matters for this pair
    saved = np.load(tmp_path / "p" / "run" / "c0.npz")
    assert (saved["pred"] == pred).all() and (saved["label"] == label).all()
    assert list(saved["spacing"]) == spacing
    assert cb.saved == {"c0": "predictions/run/c0.npz"}


def _drive(cb: CaseMetricsCallback, preds: dict[str, np.ndarray], num_classes: int = 2, fov=None) -> None:
    """One test epoch of ``preds`` (``case_id -> (H, W)`` labels) against a fixed truth."""
    label = np.zeros((16, 16), dtype=np.int64)
    label[4:12, 6:10] = 1
    cb.on_test_epoch_start(None, None)
    for cid, pred in preds.items():
        prob = np.stack([(pred == c).astype(np.float32) for c in range(num_classes)])
        outputs = {
            "prob": torch.from_numpy(prob),
            "label": torch.from_numpy(label),
            "fov": None if fov is None else torch.from_numpy(fov),
            "case_id": cid,
            "spacing": [1.0, 1.0],
        }
        cb.on_test_batch_end(None, None, outputs, {"image": torch.zeros(1, 1, 16, 16)}, 0)
    cb.on_test_epoch_end(_T(), None)


def _real(seed: int) -> np.ndarray:
    pred = np.zeros((16, 16), dtype=np.int64)
    pred[4 + seed % 3 : 12, 6:10] = 1
    return pred


def test_degenerate_when_more_than_half_of_the_cases_are_constant() -> None:
    full, empty = np.ones((16, 16), np.int64), np.zeros((16, 16), np.int64)
    cb = CaseMetricsCallback()
    _drive(cb, {"c3": full, "c1": full, "c2": empty, "c0": _real(0)})  # 3 of 4 constant
    assert cb.degenerate == {"kind": "all-foreground", "cases": ["c1", "c2", "c3"]}
    _drive(cb, {"c0": full, "c1": full, "c2": _real(1), "c3": _real(2)})  # exactly half: not degenerate
    assert cb.degenerate == {}
    _drive(cb, {"c0": _real(0), "c1": _real(1)})
    assert cb.degenerate == {}
    _drive(cb, {"c0": empty, "c1": empty, "c2": _real(1)})
    assert cb.degenerate == {"kind": "all-background", "cases": ["c0", "c1"]}


def test_degenerate_multiclass_constant_and_field_of_view() -> None:
    cb = CaseMetricsCallback()
    two = np.full((16, 16), 2, np.int64)
    _drive(cb, {"a": two, "b": two, "c": np.ones((16, 16), np.int64)}, num_classes=3)
    assert cb.degenerate == {"kind": "constant", "cases": ["a", "b", "c"]}
    fov = np.zeros((16, 16), bool)
    fov[2:14, 2:14] = True
    outside = np.ones((16, 16), np.int64)
    outside[fov] = 0  # foreground only outside the field of view: all background inside it
    _drive(cb, {"a": outside, "b": outside}, fov=fov)
    assert cb.degenerate == {"kind": "all-background", "cases": ["a", "b"]}


class _DDP:  # two ranks whose notes are gathered: rank 1 holds the constant cases
    world_size = 2


def test_degenerate_gathers_every_rank(monkeypatch) -> None:
    full = np.ones((16, 16), np.int64)
    other = CaseMetricsCallback()
    _drive(other, {"c2": full, "c3": full})
    cb = CaseMetricsCallback()
    _drive(cb, {"c0": _real(0), "c1": full})
    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)

    def gather(out, obj):
        out[0], out[1] = obj, (other.rows, other.saved, other.constant, other.curves)

    monkeypatch.setattr(torch.distributed, "all_gather_object", gather)
    cb.on_test_epoch_end(_DDP(), None)
    assert [r["case_id"] for r in cb.rows] == ["c0", "c1", "c2", "c3"]
    assert cb.degenerate == {"kind": "all-foreground", "cases": ["c1", "c2", "c3"]}


def test_a_run_writes_the_degenerate_field_only_when_set(tmp_path, monkeypatch) -> None:
    """End to end through the runner: the callback's notes reach the record written to disk."""
    import json

    import bench.run.callbacks as callbacks
    from bench.config import sweep_from_dict
    from bench.run import run_sweep
    from tests.conftest import tiny_sweep_dict

    monkeypatch.setattr(callbacks, "constant_kind", lambda *a, **k: "all-foreground")
    (record,) = run_sweep(sweep_from_dict(tiny_sweep_dict()), tmp_path / "a", progress=False)
    assert record.status == "done", record.traceback
    on_disk = json.loads((tmp_path / "a" / f"{record.run_id}.json").read_text())
    assert on_disk["degenerate"] == {"kind": "all-foreground", "cases": sorted(record.split["test"])}
    monkeypatch.setattr(callbacks, "constant_kind", lambda *a, **k: None)
    (record,) = run_sweep(sweep_from_dict(tiny_sweep_dict()), tmp_path / "b", progress=False)
    on_disk = json.loads((tmp_path / "b" / f"{record.run_id}.json").read_text())
    assert record.status == "done" and "degenerate" not in on_disk
