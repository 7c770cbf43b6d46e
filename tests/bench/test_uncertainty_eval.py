"""``segbench uncertainty`` on two tiny trained seeds: the record's per-case MI and Dice against numpy
recomputations from the members' own predictions, AUROC against a pairwise count, the markdown
against the JSON, and one-line errors."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.cli.protocols  # noqa: F401  (registers the commands)
from bench.cli import main
from bench.config import sweep_from_dict
from bench.evaluate import uncertainty_eval as ue
from bench.evaluate.predict import find_model, load_model, make_datamodule, predict_case
from bench.run import run_sweep
from tests.conftest import tiny_sweep_dict

OOD = "synthetic_vessels:data_seed=7,num_test=3"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Two tiny done seeds of one row (kept models): (results, run ids)."""
    results = tmp_path_factory.mktemp("unc-runs")
    records = run_sweep(sweep_from_dict(tiny_sweep_dict(seeds=[0, 1])), results, progress=False)
    assert all(r.done for r in records)
    return results, [r.run_id for r in records]


@pytest.fixture(scope="module")
def record(seeds) -> tuple[Path, dict]:
    results, ids = seeds
    code = main(["uncertainty", "--results", str(results), "--runs", *ids, "--ood", OOD, "--quiet"])
    assert code == 0
    (path,) = sorted((results / "uncertainty").glob("*.json"))
    return path, json.loads(path.read_text())


def _h(p: np.ndarray) -> np.ndarray:
    """Entropy over axis 0 by hand (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=0)


def test_mi_and_dice_equal_numpy_from_the_members_own_predictions(seeds, record) -> None:
    results, ids = seeds
    _, rec = record
    models = [load_model(find_model(i, results)) for i in ids]
    dm = make_datamodule(models[0])
    dm.setup("test")
    rows = {c["case_id"]: c for c in rec["cases"]}
    assert sorted(rows) == sorted(dm.splits["test"]) and len(rows) == 2
    for cid, row in rows.items():
        case = dm.case(cid)
        probs = np.stack([predict_case(m, case.image).astype(np.float64) for m in models])  # (M, C, H, W)
        mean = probs.mean(0)
        inside = np.ones(mean.shape[1:], bool) if case.fov is None else np.asarray(case.fov, bool)
        mi = _h(mean) - np.mean([_h(p) for p in probs], axis=0)
        assert row["unc_mi"] == pytest.approx(float(np.maximum(mi, 0)[inside].mean()), abs=1e-6)
        assert row["unc_entropy"] == pytest.approx(float(_h(mean)[inside].mean()), abs=1e-6)
        assert row["unc_msp"] == pytest.approx(float((1 - mean.max(0))[inside].mean()), abs=1e-6)
        pred = (mean.argmax(0) == 1) & inside
        gt = (np.asarray(case.label) == 1) & inside
        dice = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
        assert row["dice"] == pytest.approx(float(dice), abs=1e-9)
    assert rec["inputs"]["members"][0]["run_id"] == ids[0] and len(rec["inputs"]["members"]) == 2


def test_energy_is_of_the_mean_logits(seeds, record) -> None:
    results, ids = seeds
    _, rec = record
    models = [load_model(find_model(i, results)) for i in ids]
    dm = make_datamodule(models[0])
    dm.setup("test")
    cid = rec["cases"][0]["case_id"]
    case = dm.case(cid)
    x = torch.from_numpy(np.asarray(case.image, np.float32))[None]
    with torch.inference_mode():
        z = np.mean([m.module.predict_logits(x)[0].double().numpy() for m in models], axis=0)
    inside = np.ones(z.shape[1:], bool) if case.fov is None else np.asarray(case.fov, bool)
    e = -(z.max(0) + np.log(np.exp(z - z.max(0)).sum(0)))
    assert rec["cases"][0]["unc_energy"] == pytest.approx(float(e[inside].mean()), abs=1e-5)


def _pairwise_auroc(inside: list[float], outside: list[float]) -> float:
    wins = sum((o > i) + 0.5 * (o == i) for i in inside for o in outside)
    return wins / (len(inside) * len(outside))


def test_auroc_equals_a_pairwise_count_and_aurc_a_hand_loop(record) -> None:
    _, rec = record
    (label,) = rec["ood_cases"]
    assert (
        label == OOD and len(rec["ood_cases"][label]) == 3
    )  # same name as the runs': the entry is the label
    for key in ("unc_msp", "unc_entropy", "unc_energy", "unc_mi"):
        inside = [c[key] for c in rec["cases"]]
        outside = [c[key] for c in rec["ood_cases"][label]]
        assert rec["summary"][key]["auroc"][label] == pytest.approx(_pairwise_auroc(inside, outside))
        # AURC: accept by increasing score, mean risk of the accepted, mean over coverages (no ties here)
        order = np.argsort(inside)
        risk = 1 - np.array([c["dice"] for c in rec["cases"]])[order]
        hand = np.mean([risk[: k + 1].mean() for k in range(len(risk))])
        assert rec["summary"][key]["aurc"] == pytest.approx(float(hand))


def test_markdown_numbers_equal_the_json(record) -> None:
    path, rec = record
    md = path.with_suffix(".md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| unc_")]
    assert [line.split("|")[1].strip() for line in table] == list(rec["summary"])
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        s = rec["summary"][cells[0]]
        want = [s["aurc"], s["spearman"], *(s["auroc"][o["label"]] for o in rec["inputs"]["ood"])]
        for cell, value in zip(cells[1:], want, strict=True):
            assert cell == ("n/a" if value is None else f"{value:.4f}")
    mean_dice = np.mean([c["dice"] for c in rec["cases"]])
    assert re.search(rf"ensemble Dice mean {mean_dice:.4f}", md)
    assert f"{len(rec['cases'])} of synthetic_vessels" in md


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_run_is_one_line(seeds, capsys) -> None:
    results, _ = seeds
    err = _error(["uncertainty", "--results", str(results), "--runs", "nope_run", "--quiet"], capsys)
    assert "nope_run" in err and "no run record" in err


def test_run_without_kept_model_is_one_line(seeds, tmp_path, capsys) -> None:
    results, ids = seeds
    copy = tmp_path / "res"
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("models", "uncertainty"))
    rec_file = copy / f"{ids[0]}.json"
    data = json.loads(rec_file.read_text())
    data.pop("weights", None)
    rec_file.write_text(json.dumps(data))
    err = _error(["uncertainty", "--results", str(copy), "--runs", ids[0], "--quiet"], capsys)
    assert ids[0] in err and "kept no weights" in err


def test_mc_dropout_on_a_net_without_dropout_is_one_line(seeds, capsys) -> None:
    results, ids = seeds
    argv = ["uncertainty", "--results", str(results), "--runs", ids[1], "--mc-dropout", "3", "--quiet"]
    err = _error(argv, capsys)
    assert f"run {ids[1]}: --mc-dropout needs dropout layers" in err


def test_row_selects_the_seeds_of_the_row(seeds) -> None:
    results, ids = seeds
    members = ue.select_members(results, row="synthetic_vessels:unet:dice_ce")
    assert [m.run_id for m in members] == ids
    with pytest.raises(ue.UncertaintyError, match="no done run"):
        ue.select_members(results, row="synthetic_vessels:swin_unetr")


def test_mc_dropout_mi_equals_numpy_over_seeded_dropout_passes(tmp_path) -> None:
    sweep = tiny_sweep_dict(models=[{"name": "attention_unet", "channels": [4, 8], "dropout": 0.2}])
    (rec,) = run_sweep(sweep_from_dict(sweep), tmp_path, progress=False)
    assert rec.done, rec.error
    model = load_model(find_model(rec.run_id, tmp_path))
    path, out = ue.evaluate_uncertainty(tmp_path, [model], mc_dropout=3, seed=5)
    dm = make_datamodule(model)
    dm.setup("test")
    row = out["cases"][0]
    case = dm.case(row["case_id"])
    net = model.module
    torch.manual_seed(5)
    for m in net.modules():
        if isinstance(m, torch.nn.Dropout | torch.nn.Dropout2d):
            m.train()
    x = torch.from_numpy(np.asarray(case.image, np.float32))[None]
    with torch.inference_mode():
        s = np.stack([torch.softmax(net.predict_logits(x), 1)[0].double().numpy() for _ in range(3)])
    net.eval()
    inside = np.ones(s.shape[2:], bool) if case.fov is None else np.asarray(case.fov, bool)
    mi = _h(s.mean(0)) - np.mean([_h(p) for p in s], axis=0)
    assert row["unc_mi_mc"] > 0
    assert row["unc_mi_mc"] == pytest.approx(float(np.maximum(mi, 0)[inside].mean()), abs=1e-6)
    assert "unc_mi" not in row  # one run: no ensemble MI
    assert not any(m.training for m in net.modules())  # back in eval mode
    assert math.isfinite(out["summary"]["unc_mi_mc"]["aurc"])


def test_mask_former_rba_is_its_own_query_score_by_hand(tmp_path) -> None:
    """``unc_ood`` of a MaskFormer run equals RbA computed here from its class and mask logits
    (one window: patch = image, so the blending is the identity); a U-Net run has no ``unc_ood``."""
    mf = {"name": "mask_former", "layers": [1, 1, 1, 1], "base_channels": 8, "pixel_channels": 16}
    mf.update({"mask_dim": 16, "hidden_dim": 16, "num_queries": 4, "dec_layers": 1, "dim_feedforward": 32})
    sweep = tiny_sweep_dict(
        models=[mf], data={"batch_size": 2, "patch_size": [64, 64], "samples_per_epoch": 4}
    )
    (rec,) = run_sweep(sweep_from_dict(sweep), tmp_path, progress=False)
    assert rec.done, rec.error
    model = load_model(find_model(rec.run_id, tmp_path))
    _, out = ue.evaluate_uncertainty(tmp_path, [model], ood=[OOD])
    dm = make_datamodule(model)
    dm.setup("test")
    for row in out["cases"]:
        case = dm.case(row["case_id"])
        x = torch.from_numpy(np.asarray(case.image, np.float32))[None]
        with torch.inference_mode():
            o = model.module.net(x)
        cls = torch.softmax(o["class_logits"][0].double(), -1)[:, :-1].numpy()  # (Q, K)
        masks = 1 / (1 + np.exp(-o["mask_logits"][0].double().numpy()))  # (Q, H, W)
        semantic = np.einsum("qk,qhw->khw", cls, masks)
        rba = -np.tanh(semantic).sum(0)
        inside = np.ones(rba.shape, bool) if case.fov is None else np.asarray(case.fov, bool)
        assert row["unc_ood"] == pytest.approx(float(rba[inside].mean()), abs=1e-5)
        assert -2 < row["unc_ood"] <= 0  # (-K, 0] with K = 2 classes
    inside = [c["unc_ood"] for c in out["cases"]]
    outside = [c["unc_ood"] for c in out["ood_cases"][OOD]]
    assert out["summary"]["unc_ood"]["auroc"][OOD] == pytest.approx(_pairwise_auroc(inside, outside))
    assert "unc_ood" in out["definitions"]


def test_a_network_without_an_ood_output_has_no_unc_ood(record) -> None:
    _, rec = record
    assert "unc_ood" not in rec["cases"][0] and "unc_ood" not in rec["summary"]
