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
