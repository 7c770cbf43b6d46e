"""Test-time options: flip TTA against a hand-computed average, post-processing in the test loop,
and both as part of the run / row identity (defaults keep the earlier ids)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.config import sweep_from_dict
from bench.records.identity import hash_config, row_key
from bench.run.callbacks import CaseMetricsCallback
from models.inference import flip_combinations, tta_probabilities
from models.module import SegmentationModule


def _net(dims: int = 2) -> nn.Module:
    """A fixed 1x1 conv followed by an asymmetric 3-wide conv: flipping the input changes the output."""
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    torch.manual_seed(0)
    first = conv(1, 2, 1)
    second = conv(2, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, *([1] * dims)))
        first.bias.copy_(torch.tensor([0.5, -0.25]))
        w = torch.zeros_like(second.weight)
        w[(0, 0) + (0,) * dims] = 3.0  # a corner tap only: strongly asymmetric
        w[(1, 1) + (1,) * dims] = 1.0
        w[(1, 0) + (2,) * dims] = -1.5
        second.weight.copy_(w)
    return nn.Sequential(first, second).eval()


def _module(net: nn.Module, shape: tuple[int, ...], **kw: str) -> SegmentationModule:
    return SegmentationModule(net, nn.Identity(), num_classes=2, roi_size=shape, **kw).eval()


def test_flip_tta_is_the_hand_computed_average_of_the_four_2d_flips() -> None:
    net = _net()
    x = torch.arange(30, dtype=torch.float32).view(1, 1, 5, 6) / 10 - 1
    sm = lambda t: torch.softmax(net(t), dim=1)  # noqa: E731
    by_hand = (
        sm(x) + sm(x.flip(2)).flip(2) + sm(x.flip(3)).flip(3) + sm(x.flip(2).flip(3)).flip(3).flip(2)
    ) / 4
    with torch.no_grad():
        got = tta_probabilities(net, x, "flip")
        plain = tta_probabilities(net, x, "none")
    torch.testing.assert_close(got, by_hand.detach(), rtol=0, atol=1e-6)
    assert (got - plain).abs().max() > 1e-2  # the flips matter for this net
    # and the test loop's step (sliding windows of the whole case) gives the same
    batch = {"image": x, "label": torch.zeros(1, 1, 5, 6, dtype=torch.int64), "case_id": ["a"]}
    with torch.no_grad():
        out = _module(net, (5, 6), tta="flip").test_step(batch, 0)
    torch.testing.assert_close(out["prob"], by_hand[0].detach(), rtol=0, atol=1e-5)
    assert out["pred"] is None


def test_3d_flip_tta_averages_eight_flips() -> None:
    assert flip_combinations(2) == [(), (2,), (3,), (2, 3)]
    combos = flip_combinations(3)
    assert len(combos) == 8 and len(set(combos)) == 8
    net = _net(3)
    x = torch.linspace(-1, 1, 60).view(1, 1, 3, 4, 5)
    sm = lambda t: torch.softmax(net(t), dim=1)  # noqa: E731
    by_hand = sum(sm(x.flip(a)).flip(a) if a else sm(x) for a in combos) / 8
    with torch.no_grad():
        torch.testing.assert_close(tta_probabilities(net, x, "flip"), by_hand.detach(), rtol=0, atol=1e-6)


def test_the_test_step_post_processes_and_the_record_keeps_the_raw_metrics() -> None:
    """A 1x1 conv that predicts foreground where the image is positive: two blobs (5 and 9
    voxels); the label is the 9-voxel one, so largest_component raises the Dice to 1."""
    net = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([-1.0, 1.0]).view(2, 1, 1, 1))
        net.bias.zero_()
    image = -torch.ones(1, 1, 12, 12)
    image[0, 0, 0, 0:5] = 1
    image[0, 0, 4:7, 4:7] = 1
    label = torch.zeros(1, 1, 12, 12, dtype=torch.int64)
    label[0, 0, 4:7, 4:7] = 1
    batch = {"image": image, "label": label, "case_id": ["c"]}
    with torch.no_grad():
        out = _module(net.eval(), (12, 12), postprocess="largest_component").test_step(batch, 0)
    assert int(out["pred"].sum()) == 9 and int(out["prob"].argmax(0).sum()) == 14
    cb = CaseMetricsCallback()
    cb.on_test_batch_end(None, None, out, batch, 0)  # type: ignore[arg-type]
    row = cb.rows[0]
    assert row["dice"] == pytest.approx(1.0)
    assert row["raw"]["dice"] == pytest.approx(2 * 9 / (14 + 9))
    assert row["ece"] == row["raw"]["ece"]  # calibration is the probabilities'
    assert cb.constant["c"] is None


def test_post_processing_and_tta_make_another_run_and_row_but_defaults_keep_the_ids() -> None:
    base = sweep_from_dict({"name": "tiny"}).expand()[0]
    pp = sweep_from_dict({"name": "tiny", "eval": {"postprocess": "largest_component"}}).expand()[0]
    tta = sweep_from_dict({"name": "tiny", "eval": {"tta": "flip"}}).expand()[0]
    assert len({base.run_id, pp.run_id, tta.run_id}) == 3
    assert len({row_key(c.to_dict()) for c in (base, pp, tta)}) == 3
    # a record written before the fields existed has no eval.tta / eval.postprocess
    old = base.to_dict()
    del old["eval"]["tta"], old["eval"]["postprocess"]
    assert hash_config(old) == base.config_hash
    assert row_key(old) == row_key(base.to_dict())


def test_tta_refuses_an_unknown_mode() -> None:
    with pytest.raises(ValueError, match="tta"):
        tta_probabilities(_net(), torch.zeros(1, 1, 4, 4), "rotate")
    with pytest.raises(ValueError, match="min_size:N"):
        _module(_net(), (4, 4), postprocess="biggest")


def test_a_sweep_with_tta_and_post_processing_gives_separate_rows(tmp_path) -> None:
    """Three tiny runs of one model (raw, flip TTA, largest component) trained into one results
    folder: three rows of the leaderboard, and the post-processed record keeps the raw metrics."""
    from bench.leaderboard import analyse_records
    from bench.records import load_records
    from bench.run import run_sweep
    from tests.conftest import tiny_sweep_dict

    for ev in ({}, {"tta": "flip"}, {"postprocess": "largest_component"}):
        sweep = tiny_sweep_dict()
        sweep["eval"] = {**sweep["eval"], **ev}
        (record,) = run_sweep(sweep_from_dict(sweep), tmp_path, progress=False)
        assert record.done, record.error
    records, _ = load_records(tmp_path)
    (analysis,) = analyse_records(records)
    assert len(analysis.ranked) == 3
    settings = {
        (r.config["eval"].get("tta", "none"), r.config["eval"].get("postprocess", "none"))
        for r in analysis.ranked
    }
    assert settings == {("none", "none"), ("flip", "none"), ("none", "largest_component")}
    pp = next(r for r in records if (r.config["eval"].get("postprocess") or "none") != "none")
    assert all("raw" in c and "dice" in c["raw"] for c in pp.cases)
