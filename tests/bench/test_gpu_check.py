"""The GPU check script (``python -m bench.perf.gpu_check``): its CPU dry run end to end, the
comparison that decides whether a fast path matches, and the stage guard."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.perf import gpu_check, gpu_parity

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict]:
    """One dry run for the whole module: two small families, 16×16 steps, an empty wheels folder."""
    tmp = tmp_path_factory.mktemp("gpu")
    (tmp / "wheels").mkdir()
    out = tmp / "gpu.json"
    cmd = [sys.executable, "-m", "bench.perf.gpu_check", "--dry-run", "--out", str(out)]
    cmd += ["--families", "cnn", "mamba", "--size", "16", "--wheels", str(tmp / "wheels")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    return proc, json.loads(out.read_text()) if out.exists() else {}


def test_dry_run_runs_every_stage_and_says_which_backend_ran(dry_run):
    proc, data = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = data["stages"]
    assert list(stages) == ["environment", "install", "fast_paths", "step_time", "ddp", "sweep"]
    for name, st in stages.items():
        assert st["status"] in ("ok", "skipped"), (name, st)
        assert st["status"] == "ok" or st["reason"], name  # a skip always says why
        assert st["seconds"] >= 0
    assert stages["ddp"]["status"] == "skipped"
    assert stages["environment"]["torch"] == torch.__version__
    # no kernel claimed on CPU: the fast sides are the pure-PyTorch paths
    checks = stages["fast_paths"]["checks"]
    assert checks["selective_scan"]["float32"]["fast"].startswith("segbench selective_scan (mambapy.pscan")
    assert checks["selective_scan"]["float32"]["reference"].startswith("step-by-step loop")
    assert "mlstm_recurrent" in checks["mlstm"]["float32"]["reference"]
    assert "skipped" in checks["mamba_mixer"]["float32"]
    for name in ("selective_scan", "mlstm", "sdpa"):
        for dtype in ("float32", "bfloat16"):
            assert checks[name][dtype]["passed"], (name, dtype, checks[name][dtype])
    assert stages["fast_paths"]["failed"] == []
    # step time: every family model in both precisions; nnU-Net's networks as references
    rows = stages["step_time"]["rows"]
    seen = {(r["model"], r["precision"]) for r in rows if "error" not in r}
    for model in ("nnunet_resenc", "nnunet_plain", "resenc_unet", "umamba_bot_resenc", "umamba_bot"):
        assert {(model, "32-true"), (model, "bf16-mixed")} <= seen
    resenc = next(r for r in rows if r["model"] == "nnunet_resenc")
    assert resenc["reference"] == "dna_resenc" and resenc["peak_mib"] == "n/a"
    # built from the same plan as the reference: the same network, parameter for parameter
    assert resenc["preset"] == "plan of the input patch" and resenc["params"] == resenc["ref_params"]
    assert resenc["time_ratio"] == pytest.approx(resenc["s_per_step"] / resenc["ref_s_per_step"])
    plain = next(r for r in rows if r["model"] == "nnunet_plain")
    assert plain["reference"] == "dna_plain" and plain["params"] == plain["ref_params"]
    # segbench's 1-2 M CPU-table nets have no reference of their size: no ratio at all
    small = next(r for r in rows if r["model"] == "resenc_unet")
    assert "reference" not in small and "time_ratio" not in small
    # the sweep: one record, done, written by segbench's own runner
    sweep = stages["sweep"]
    assert [r["status"] for r in sweep["records"]] == ["done"]
    assert sweep["exit_code"] == 0
    installs = stages["install"]["packages"]
    assert set(installs) == set(gpu_check.GPU_PACKAGES)
    assert all(p["outcome"] in ("present", "absent") for p in installs.values())


def test_the_summary_table_renders_from_the_json(dry_run, tmp_path):
    _, data = dry_run
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(data))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.perf.gpu_check", "--table", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| fast_paths | ok |" in proc.stdout
    assert "| selective_scan | float32 |" in proc.stdout
    assert "| nnunet_resenc | plan of the input patch |" in proc.stdout


def _step_row(params: int, ref_params: int) -> dict:
    """A step-time row as a GPU run wrote it before the size rule: a ratio of unequal networks."""
    return {
        "family": "cnn",
        "model": "resenc_unet",
        "precision": "32-true",
        "fast_path": "PyTorch",
        "preset": "default: no preset 'paper'",
        "params": params,
        "s_per_step": 0.053,
        "peak_mib": 2103.0,
        "reference": "dna_resenc",
        "ref_params": ref_params,
        "ref_s_per_step": 0.069,
        "ref_peak_mib": 5184.0,
        "time_ratio": 0.053 / 0.069,
        "memory_ratio": 2103.0 / 5184.0,
    }


def test_the_table_shows_no_ratio_of_networks_of_different_sizes():
    from bench.perf.gpu_steps import format_steps

    settings = {"device": "cuda", "dims": 3, "size": 96, "batch": 2, "warmup": 3, "repeats": 5}
    # 1.41 M against 62.81 M (the first GPU run's row): the ratio measures the size, not the code
    text = format_steps({"settings": settings, "rows": [_step_row(1_410_530, 62_809_928)]})
    assert "0.77" not in text and "0.41" not in text
    assert "– (sizes differ: 1.41 M vs 62.81 M) | –" in text
    # the same backbone plus one layer (+1 %): the ratios stand
    text = format_steps({"settings": settings, "rows": [_step_row(63_485_768, 62_809_928)]})
    assert "| 0.77 | 0.41 |" in text and "sizes differ" not in text


def test_a_step_row_of_unequal_sizes_gets_no_ratio(monkeypatch):
    from bench.perf import gpu_steps

    # pair segbench's 2D U-Net of the CPU tables with nnU-Net's plain U-Net of the 16² plan
    monkeypatch.setitem(
        gpu_steps.FAMILY_MODELS, "cnn", [("unet", "dna_plain"), ("nnunet_plain", "dna_plain")]
    )
    out = gpu_steps.step_table("cpu", ["cnn"], 2, 16, 1, 1, lambda: 1.0)
    rows = {(r["model"], r["precision"]): r for r in out["rows"]}
    unet, nnunet = rows["unet", "32-true"], rows["nnunet_plain", "32-true"]
    assert unet["params"] != unet["ref_params"]
    assert unet["time_ratio"] is None and unet["memory_ratio"] is None
    assert unet["ratio_withheld"].startswith("sizes differ: ")
    assert nnunet["params"] == nnunet["ref_params"] and "ratio_withheld" not in nnunet
    assert nnunet["time_ratio"] == pytest.approx(nnunet["s_per_step"] / nnunet["ref_s_per_step"])


def test_scaled_error_is_the_largest_difference_over_the_largest_reference_value():
    ref = torch.tensor([[1.0, -4.0], [2.0, 0.5]])
    fast = ref + torch.tensor([[0.0, 0.02], [-0.01, 0.0]])
    assert gpu_parity.scaled_error(fast, ref) == pytest.approx(0.02 / 4.0)  # by hand
    assert gpu_parity.scaled_error(fast[:1], ref) == float("inf")  # shapes differ
    assert gpu_parity.scaled_error(fast * float("nan"), ref) == float("inf")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compare_fails_a_mismatch_beyond_the_tolerance_and_passes_one_within(dtype):
    tol = gpu_parity.TOLERANCES[dtype]
    rng = np.random.default_rng(0)
    ref = torch.as_tensor(rng.standard_normal((3, 5)), dtype=torch.float32)
    scale = float(ref.abs().max())
    bump = torch.zeros_like(ref)
    bump[1, 2] = 3 * tol * scale  # three tolerances off, at one place
    good = {"w": ref.clone()}
    assert gpu_parity.compare(ref.clone(), ref, good, good, dtype)["passed"]
    out_bad = gpu_parity.compare(ref + bump, ref, good, good, dtype)
    assert not out_bad["passed"] and out_bad["output_error"] == pytest.approx(3 * tol, rel=1e-3)
    grad_bad = gpu_parity.compare(ref, ref, {"w": ref + bump}, good, dtype)
    assert not grad_bad["passed"] and grad_bad["grad_errors"]["w"] == pytest.approx(3 * tol, rel=1e-3)
    missing = gpu_parity.compare(ref, ref, {}, good, dtype)  # a gradient that never arrived
    assert not missing["passed"]
    within = gpu_parity.compare(ref + bump / 6, ref, good, good, dtype)
    assert within["passed"]


def test_a_wrong_fast_path_is_caught_in_output_and_gradient():
    leaves = gpu_parity._scan_leaves({"batch": 1, "length": 6, "width": 3, "state": 2}, "cpu")

    def ref(lv):
        return gpu_parity.scan_loop(*(lv[k] for k in ("u", "delta", "A", "B", "C", "D")))

    def no_skip(lv):  # forgets the D·u skip term
        return gpu_parity.scan_loop(*(lv[k] for k in ("u", "delta", "A", "B", "C")), lv["D"] * 0)

    assert gpu_parity.run_pair(ref, ref, leaves, torch.float32)["passed"]
    res = gpu_parity.run_pair(no_skip, ref, leaves, torch.float32)
    assert not res["passed"]
    assert res["grad_errors"]["D"] == pytest.approx(1.0)  # zero gradient against a non-zero one


def test_scan_loop_matches_a_hand_computed_recurrence():
    # one channel, one state: h_t = exp(d A) h_{t-1} + d b u, y = c h + D u
    u = torch.tensor([[[1.0], [2.0]]])
    d = torch.tensor([[[0.5], [0.5]]])
    A, B, C, D = (
        torch.tensor([[-2.0]]),
        torch.tensor([[[1.0], [3.0]]]),
        torch.tensor([[[2.0], [1.0]]]),
        torch.tensor([0.5]),
    )
    h0 = 0.5 * 1.0 * 1.0
    h1 = float(np.exp(-1.0)) * h0 + 0.5 * 3.0 * 2.0
    expected = torch.tensor([[[2.0 * h0 + 0.5], [1.0 * h1 + 1.0]]])
    torch.testing.assert_close(gpu_parity.scan_loop(u, d, A, B, C, D), expected)


def _args(tmp_path: Path, **kw) -> argparse.Namespace:
    args = gpu_check._parse(["--dry-run", "--out", str(tmp_path / "g.json")])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_a_failing_stage_is_recorded_and_the_next_stages_still_run(tmp_path):
    seen = []

    def boom(ctx):
        seen.append("boom")
        raise ValueError("the kernel exploded\nsecond line")

    def after(ctx):
        seen.append("after")
        # the JSON on disk already holds the failure (written after every stage)
        on_disk = json.loads(ctx.out.read_text())
        return {"saw": on_disk["stages"]["boom"]["status"]}

    def skip(ctx):
        raise gpu_check.SkipStage("no GPU here")

    ctx = gpu_check.Context(_args(tmp_path), tmp_path / "g.json")
    data = gpu_check.run_stages(ctx, {"boom": boom, "after": after, "skip": skip})
    assert seen == ["boom", "after"]
    boom_entry = data["stages"]["boom"]
    assert boom_entry["status"] == "failed"
    assert boom_entry["error"] == "ValueError: the kernel exploded"  # one line
    assert "raise ValueError" in boom_entry["traceback"]
    assert data["stages"]["after"] == {**data["stages"]["after"], "status": "ok", "saw": "failed"}
    assert data["stages"]["skip"]["status"] == "skipped" and data["stages"]["skip"]["reason"] == "no GPU here"
    assert json.loads((tmp_path / "g.json").read_text())["stages"]["skip"]["status"] == "skipped"


def test_the_injected_failure_option_fails_only_its_stage(tmp_path):
    ctx = gpu_check.Context(_args(tmp_path, fail_stage="one"), tmp_path / "g.json")
    data = gpu_check.run_stages(ctx, {"one": lambda c: {"x": 1}, "two": lambda c: {"y": 2}})
    assert (
        data["stages"]["one"]["status"] == "failed" and "--fail-stage one" in data["stages"]["one"]["error"]
    )
    assert data["stages"]["two"]["status"] == "ok" and data["stages"]["two"]["y"] == 2


def test_no_stage_starts_once_the_budget_is_spent(tmp_path):
    ran = []
    ctx = gpu_check.Context(_args(tmp_path, budget_s=0.0), tmp_path / "g.json")
    data = gpu_check.run_stages(ctx, {"a": lambda c: ran.append("a") or {}})
    assert ran == []
    assert data["stages"]["a"]["status"] == "skipped" and "budget" in data["stages"]["a"]["reason"]
    ctx = gpu_check.Context(_args(tmp_path, budget_s=600.0), tmp_path / "h.json")
    assert gpu_check.run_stages(ctx, {"a": lambda c: ran.append("a") or {}})["stages"]["a"]["status"] == "ok"


def test_a_full_run_without_a_gpu_is_refused_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def must_not_run(*_):
        raise AssertionError("a full run started on a machine without a GPU")

    monkeypatch.setattr(gpu_check, "run_stages", must_not_run)
    with pytest.raises(gpu_check.NoGpuError, match="--dry-run"):
        gpu_check.main(["--out", str(tmp_path / "g.json")])
    assert not (tmp_path / "g.json").exists()
    # `segbench bench gpu` runs this module's main
    from bench.cli.tools import BENCHMARKS
    from bench.perf import gpu

    assert "gpu" in BENCHMARKS and gpu.main is gpu_check.main
