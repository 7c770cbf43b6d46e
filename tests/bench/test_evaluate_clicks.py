"""``segbench evaluate --clicks``: per-click PNG folders of an outside interactive method, scored
into NoC and Dice after k clicks against values computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _mask(rows: slice, cols: slice = slice(0, 10)) -> np.ndarray:
    m = np.zeros((20, 20), np.uint8)
    m[rows, cols] = 1
    return m


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two cases, truth: a 10x10 square (100 px) at the top left (stored as 0 / 255).

    a: click 1 paints 50 of its pixels, click 2 90, click 3 all 100;
    b: click 1 paints 80 of them, click 2 the same 80 plus 20 pixels outside (and stops).
    """
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for cid in ("a", "b"):
        _png(gt / f"{cid}.png", _mask(slice(0, 10)) * 255)
    _png(pred / "a" / "click_01.png", _mask(slice(0, 5)))
    _png(pred / "a" / "click_02.png", _mask(slice(0, 9)))
    _png(pred / "a" / "click_03.png", _mask(slice(0, 10)))
    _png(pred / "b" / "click_1.png", _mask(slice(0, 8)))
    _png(pred / "b" / "click_2.png", _mask(slice(0, 8)) | _mask(slice(10, 12)))
    return gt, pred


def _run(tmp_path: Path, pred: Path, gt: Path) -> int:
    argv = ["evaluate", "--clicks", "--pred", str(pred), "--gt", str(gt), "--name", "clicker"]
    return main([*argv, "--results", str(tmp_path / "res"), "--quiet", "--workers", "1"])


def test_per_click_folders_give_noc_and_dice_after_k_clicks(tmp_path: Path) -> None:
    gt, pred = _folders(tmp_path)
    assert _run(tmp_path, pred, gt) == 0
    (path,) = sorted((tmp_path / "res").glob("eval__*.json"))
    record = json.loads(path.read_text())
    cases = {c["case_id"]: c for c in record["cases"]}
    # a: Dice 2*50/150, 2*90/190, 1 (then 1 to the end of the 20 clicks)
    a = cases["a"]
    assert a["dice_at_1"] == pytest.approx(100 / 150) and a["dice_at_3"] == 1.0 and a["dice_at_5"] == 1.0
    assert 180 / 190 >= 0.9 and a["noc85"] == 2 and a["noc90"] == 2 and a["clicks"] == 3
    # b: Dice 2*80/180 = 0.889, then 2*80/200 = 0.8 kept to the end: 0.9 is never reached
    b = cases["b"]
    assert b["dice_at_1"] == pytest.approx(160 / 180) and b["noc85"] == 1 and b["noc90"] == 20
    assert b["dice_at_3"] == pytest.approx(0.8) and b["dice_at_5"] == pytest.approx(0.8)
    assert record["config"]["protocol"] == "interactive" and record["problems"] == []
    assert record["aggregates"]["noc90"]["mean"] == pytest.approx(11.0)


def test_a_gap_in_the_click_numbering_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt, pred = _folders(tmp_path)
    (pred / "a" / "click_02.png").unlink()
    assert _run(tmp_path, pred, gt) == 2
    captured = capsys.readouterr()
    err = [line for line in (captured.err + captured.out).splitlines() if line.strip()]
    assert len(err) == 1 and "missing 2" in err[0] and str(pred / "a") in err[0]
    assert not list((tmp_path / "res").glob("eval__*.json"))


def test_a_case_without_ground_truth_is_a_problem(tmp_path: Path) -> None:
    gt, pred = _folders(tmp_path)
    _png(pred / "c" / "click_01.png", _mask(slice(0, 5)))
    assert _run(tmp_path, pred, gt) == 1
    (path,) = sorted((tmp_path / "res").glob("eval__*.json"))
    record = json.loads(path.read_text())
    assert [p["case_id"] for p in record["problems"]] == ["c"] and len(record["cases"]) == 2
