"""segbench's GPU paths on a lent GPU, in one script: ``python -m bench.perf.gpu_check`` (or
``segbench bench gpu``, or ``bench/perf/gpu_check.sh``); ``--dry-run`` runs the same stages on
CPU with tiny shapes.

Stages, in order (docs/cluster.md, "A lent GPU: 15 minutes"):

1. ``environment``: device name, driver, CUDA, cuDNN, NCCL, torch and package versions;
2. ``install``: mamba-ssm, causal-conv1d, mlstm-kernels, xlstm, flash-attn and
   dynamic-network-architectures from the ``--wheels`` folder first (``pip --no-index``), then
   PyPI where reachable; each package's outcome is recorded (present, installed, failed, absent);
3. ``fast_paths``: each fast path against segbench's pure-PyTorch path, forward and backward,
   float32 and bfloat16 (:mod:`bench.perf.gpu_parity`);
4. ``step_time``: one training step (forward, cross-entropy, backward, AdamW step) per family's
   models, in float32 and bf16 autocast, against the reference networks of
   :mod:`bench.perf.gpu_steps` built in the same process, as ratios where both are the same size;
5. ``ddp``: a 2-GPU DDP run through ``segbench run`` when two GPUs are visible;
6. ``sweep``: the default sweep on one GPU through ``segbench run``.

Every stage is timed and guarded: a failing stage records its error (one line and the end of its
traceback) and the next stage runs. The JSON (``--out``, default ``results/perf/gpu.json``;
``gpu-dry-run.json`` for a dry run) is written atomically after every stage, so a killed run
leaves what finished. Once ``--budget-s`` seconds are spent no new stage starts. The exit code
is 1 when a stage failed or a fast path missed its tolerance. ``--table FILE`` prints the
Markdown summary of an earlier JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.errors import UserError

REPO = Path(__file__).resolve().parents[2]

GPU_PACKAGES = {
    "mamba-ssm": "mamba_ssm",
    "causal-conv1d": "causal_conv1d",
    "mlstm-kernels": "mlstm_kernels",
    "xlstm": "xlstm",
    "flash-attn": "flash_attn",
    "dynamic-network-architectures": "dynamic_network_architectures",
}
"""What the GPU paths and the references need: distribution name -> import name."""

VERSIONED = ("torch", "lightning", "monai", "mambapy", "triton", "numpy", *GPU_PACKAGES)

SHAPES = {
    # per fast-path check: the sizes on a GPU and in the dry run
    "gpu": {
        "selective_scan": {"batch": 2, "length": 1024, "width": 128, "state": 16},
        "mamba_mixer": {"batch": 2, "length": 1024, "width": 64, "state": 16},
        "mlstm": {"batch": 2, "heads": 4, "length": 256, "head_dim": 64, "chunk": 256},
        "sdpa": {"batch": 2, "heads": 8, "length": 1024, "head_dim": 64},
        "flash_attn": {"batch": 2, "heads": 8, "length": 1024, "head_dim": 64},
    },
    "dry": {
        "selective_scan": {"batch": 1, "length": 16, "width": 4, "state": 3},
        "mamba_mixer": {"batch": 1, "length": 16, "width": 8, "state": 4},
        "mlstm": {"batch": 1, "heads": 2, "length": 12, "head_dim": 4, "chunk": 8},
        "sdpa": {"batch": 1, "heads": 2, "length": 16, "head_dim": 8},
        "flash_attn": {"batch": 1, "heads": 2, "length": 16, "head_dim": 8},
    },
}

TINY_SWEEP: dict[str, Any] = {
    "name": "gpu_check",
    "datasets": [
        {"name": "synthetic_vessels", "size": [64, 64], "num_train": 4, "num_val": 2, "num_test": 2}
    ],
    "models": [{"name": "unet", "channels": [4, 8, 16]}],
    "losses": ["dice_ce"],
    "seeds": [0],
    "trainer": {"max_steps": 1, "log_every_n_steps": 1},
    "data": {"batch_size": 2, "patch_size": [32, 32], "samples_per_epoch": 4},
    "eval": {"sw_batch_size": 4, "betti_patch": 32},
    "tracking": {"wandb": False},
}
"""The dry run's sweep (and, with the default sweep's first model, the DDP run's): one step."""

DDP_SWEEP: dict[str, Any] = {
    **TINY_SWEEP,
    "datasets": ["synthetic_vessels"],
    "models": ["unet"],
    "trainer": {"max_steps": 100, "log_every_n_steps": 10},
    "data": {"batch_size": 4, "patch_size": [64, 64], "samples_per_epoch": 100},
    "eval": {"sw_batch_size": 8, "betti_patch": 64},
}


class NoGpuError(UserError):
    """A full run asked for on a machine where torch sees no GPU."""


class SkipStage(Exception):
    """Raised by a stage that does not apply here; its message is the recorded reason."""


@dataclass
class Context:
    """What every stage sees: the options, where results go, the clock."""

    args: argparse.Namespace
    out: Path
    started: float = field(default_factory=time.perf_counter)
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def dry(self) -> bool:
        return bool(self.args.dry_run)

    @property
    def device(self) -> str:
        """``cuda`` on a GPU machine, ``cpu`` in a dry run or without one."""
        return "cuda" if torch.cuda.is_available() and not self.dry else "cpu"

    def time_left(self) -> float:
        """Seconds of ``--budget-s`` left (``inf`` without a budget)."""
        budget = self.args.budget_s
        return float("inf") if budget is None else budget - (time.perf_counter() - self.started)

    def env(self) -> dict[str, str]:
        """The environment of a child process: this checkout (and ``--site``) first on ``PYTHONPATH``."""
        paths = [str(REPO), *([self.args.site] if self.args.site else [])]
        old = os.environ.get("PYTHONPATH")
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + ([old] if old else []))}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (temporary file beside it, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def run_stages(ctx: Context, stages: dict[str, Callable[[Context], dict[str, Any]]]) -> dict[str, Any]:
    """Run ``stages`` in order, each timed and guarded, writing the JSON after each one.

    A stage returns its result, raises :class:`SkipStage` (``status: skipped`` with the reason)
    or fails (``status: failed`` with ``error``, one line, and the ``traceback``'s end); the next
    one runs either way. No stage starts once ``--budget-s`` is spent.
    """
    ctx.data.setdefault("stages", {})
    for name, stage in stages.items():
        entry: dict[str, Any] = {"started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        t0 = time.perf_counter()
        if ctx.time_left() <= 0:
            entry |= {"status": "skipped", "reason": f"--budget-s {ctx.args.budget_s:g} spent"}
        else:
            print(f"== {name} ...", flush=True)
            try:
                if ctx.args.fail_stage == name:
                    raise RuntimeError(f"failure injected by --fail-stage {name}")
                entry |= {"status": "ok", **stage(ctx)}
            except SkipStage as why:
                entry |= {"status": "skipped", "reason": str(why)}
            except Exception as err:  # noqa: BLE001 - recorded; the next stage still runs
                entry |= {"status": "failed", "error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}
                entry["traceback"] = traceback.format_exc()[-3000:]
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        ctx.data["stages"][name] = entry
        note = entry.get("reason") or entry.get("error") or ""
        print(f"   {name}: {entry['status']} ({entry['seconds']:.1f} s) {note}", flush=True)
        write_json(ctx.out, ctx.data)
    return ctx.data


# --------------------------------------------------------------------------- environment
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _nvidia_smi() -> dict[str, str]:
    if shutil.which("nvidia-smi") is None:
        return {"nvidia_smi": "not found"}
    q = "name,driver_version,memory.total"
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return {"nvidia_smi": out.stdout.strip() or out.stderr.strip()[-300:]}


def stage_environment(ctx: Context) -> dict[str, Any]:
    """Machine, GPU, driver, CUDA / cuDNN / NCCL and package versions."""
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    nccl = torch.cuda.nccl.version() if cuda and hasattr(torch.cuda, "nccl") else None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "nccl": ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl,
        "gpus": gpus,
        "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
        **_nvidia_smi(),
        "packages": {d: _version(d) for d in VERSIONED},
    }


# --------------------------------------------------------------------------- install
def _pip(
    args: list[str], ctx: Context, timeout: float, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    target = ["--target", ctx.args.site, "--upgrade"] if ctx.args.site else []
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", *target, *args]
    if ctx.dry:
        cmd.append("--dry-run")  # resolves the files, installs nothing
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(extra_env or {})}
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "log": f"timeout after {timeout:.0f} s"}
    return {"ok": p.returncode == 0, "log": (p.stderr or p.stdout).strip()[-600:]}


def _importable(module: str, ctx: Context) -> tuple[bool, str]:
    """Import ``module`` in a fresh interpreter (this one may have cached the old answer)."""
    p = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=ctx.env(), timeout=300
    )
    return p.returncode == 0, (p.stderr.strip().splitlines() or [""])[-1][:300]


def install_one(dist: str, module: str, ctx: Context) -> dict[str, Any]:
    """Install ``dist`` from the wheels folder, else build its sdist there (``--build-s``), else PyPI."""
    if importlib.util.find_spec(module) is not None:
        return {"outcome": "present", "version": _version(dist)}
    folder = Path(ctx.args.wheels) if ctx.args.wheels else None
    stem = dist.replace("-", "_")
    found = sorted(folder.glob(f"{stem}-*")) if folder and folder.is_dir() else []
    wheels = [p for p in found if p.suffix == ".whl"]
    sdists = [p for p in found if p.name.endswith((".tar.gz", ".zip"))]
    if wheels:
        res = _pip(["--no-index", "--find-links", str(folder), dist], ctx, 600)
        how = f"wheel {wheels[-1].name}"
    elif sdists and ctx.args.build_s > 0:
        force = {f"{p}_FORCE_BUILD": "TRUE" for p in ("MAMBA", "CAUSAL_CONV1D", "FLASH_ATTENTION")}
        jobs = {"MAX_JOBS": str(os.cpu_count() or 4), **force}  # no download of a prebuilt wheel
        res = _pip(["--no-index", "--no-build-isolation", str(sdists[-1])], ctx, ctx.args.build_s, jobs)
        how = f"built from {sdists[-1].name}"
    elif sdists:
        return {"outcome": "absent", "reason": f"only the sdist {sdists[-1].name} (needs nvcc; --build-s 0)"}
    elif ctx.args.pypi and not ctx.dry:
        res = _pip(["--only-binary=:all:", "--timeout", "10", "--retries", "0", dist], ctx, 120)
        how = "PyPI wheel"
    else:
        return {
            "outcome": "absent",
            "reason": "not in the wheels folder" + ("" if ctx.dry else "; --no-pypi"),
        }
    if not res["ok"]:
        return {"outcome": "failed", "how": how, "log": res["log"]}
    if ctx.dry:
        return {"outcome": "would install", "how": how}
    ok, err = _importable(module, ctx)
    return {"outcome": "installed" if ok else "failed", "how": how, "version": _version(dist), "import": err}


def stage_install(ctx: Context) -> dict[str, Any]:
    """Each package of :data:`GPU_PACKAGES` and its outcome: ``present``, ``installed``, ``failed``
    or ``absent`` (``would install`` in a dry run, where pip runs with ``--dry-run``)."""
    if ctx.args.site:
        Path(ctx.args.site).mkdir(parents=True, exist_ok=True)
        if ctx.args.site not in sys.path:
            sys.path.insert(0, ctx.args.site)
    out = {}
    for dist, module in GPU_PACKAGES.items():
        if ctx.time_left() <= 0:
            out[dist] = {"outcome": "absent", "reason": "--budget-s spent"}
            continue
        out[dist] = install_one(dist, module, ctx)
        print(f"   {dist}: {out[dist]['outcome']}", flush=True)
    importlib.invalidate_caches()
    return {"packages": out, "wheels": ctx.args.wheels}


# --------------------------------------------------------------------------- fast paths, step time
def stage_fast_paths(ctx: Context) -> dict[str, Any]:
    """Fast paths against the pure-PyTorch paths (:func:`bench.perf.gpu_parity.run_checks`)."""
    from bench.perf.gpu_parity import TOLERANCES, run_checks

    res = run_checks(SHAPES["dry" if ctx.dry else "gpu"], ctx.device)
    return {"device": ctx.device, "tolerances": {str(k): v for k, v in TOLERANCES.items()}, **res}


def stage_step_time(ctx: Context) -> dict[str, Any]:
    """One training step per family against the reference networks (:mod:`bench.perf.gpu_steps`)."""
    from bench.perf.gpu_steps import step_table

    a = ctx.args
    size = a.size or (32 if ctx.dry else 128)
    dims = a.dims or (2 if ctx.dry else 3)
    batch, repeats = (1, 1) if ctx.dry else (a.batch, a.repeats)
    return step_table(ctx.device, a.families, dims, size, batch, repeats, ctx.time_left)


# --------------------------------------------------------------------------- ddp, sweep
def segbench_run(
    ctx: Context, sweep: dict[str, Any] | None, overrides: list[str], timeout: float
) -> dict[str, Any]:
    """``python -m bench.cli run`` in a child process into a temporary results folder.

    Returns the command, its wall time and exit code, the end of its output and, per record,
    status, world size, steps and seconds.
    """
    with tempfile.TemporaryDirectory(prefix="segbench-gpu-") as tmp:
        cmd = [sys.executable, "-m", "bench.cli", "run"]
        if sweep is not None:
            (Path(tmp) / "sweep.yaml").write_text(yaml.safe_dump(sweep))
            cmd.append(str(Path(tmp) / "sweep.yaml"))
        cmd += ["--results", str(Path(tmp) / "results"), "--quiet", "--no-leaderboard"]
        cmd += [x for o in overrides for x in ("-o", o)]
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, cwd=REPO, env=ctx.env(), capture_output=True, text=True, timeout=timeout)
            code, log = p.returncode, (p.stdout + p.stderr)[-1500:]
        except subprocess.TimeoutExpired as err:
            code, log = None, f"timeout after {timeout:.0f} s; " + str(err.stderr or "")[-1000:]
        keys = ("run_id", "status", "world_size", "steps", "train_seconds", "test_seconds", "error")
        records = []
        for path in sorted((Path(tmp) / "results").glob("*.json")):
            rec = json.loads(path.read_text())
            records.append({k: rec.get(k) for k in keys} | {"device": rec.get("device")})
    out = {"command": cmd[1:], "wall_s": round(time.perf_counter() - t0, 2), "exit_code": code}
    out |= {"records": records, "log_tail": log}
    if code != 0 or not records or any(r["status"] != "done" for r in records):
        raise RuntimeError(f"segbench run exited {code} with {len(records)} record(s): {log.strip()[-200:]}")
    return out


def stage_ddp(ctx: Context) -> dict[str, Any]:
    """A 2-rank DDP run of the default sweep's first model (2 GPUs; ``--ddp-cpu``: 2 CPU ranks)."""
    if ctx.dry and not ctx.args.ddp_cpu:
        raise SkipStage("dry run (--ddp-cpu runs it on 2 CPU ranks)")
    accelerator = "cpu" if ctx.dry else "gpu"
    if accelerator == "gpu" and torch.cuda.device_count() < 2:
        raise SkipStage(f"{torch.cuda.device_count()} GPU(s) visible; DDP needs 2")
    sweep = {**DDP_SWEEP, "trainer": {**DDP_SWEEP["trainer"], "max_steps": 2 if ctx.dry else 100}}
    overrides = [f"trainer.accelerator={accelerator}", "trainer.devices=2", "trainer.strategy=ddp"]
    return segbench_run(ctx, sweep, overrides, min(ctx.args.run_timeout_s, max(ctx.time_left(), 1)))


def stage_sweep(ctx: Context) -> dict[str, Any]:
    """The default sweep on one GPU (dry run: a one-step tiny sweep on CPU)."""
    if ctx.dry:
        return segbench_run(ctx, TINY_SWEEP, [], ctx.args.run_timeout_s)
    if not torch.cuda.is_available():
        raise SkipStage("no GPU visible")
    timeout = min(ctx.args.run_timeout_s, max(ctx.time_left(), 1))
    return segbench_run(ctx, None, ["trainer.accelerator=gpu", "trainer.devices=1"], timeout)


STAGES: dict[str, Callable[[Context], dict[str, Any]]] = {
    "environment": stage_environment,
    "install": stage_install,
    "fast_paths": stage_fast_paths,
    "step_time": stage_step_time,
    "ddp": stage_ddp,
    "sweep": stage_sweep,
}
"""The stages in the order they run (docs/cluster.md says why this order)."""


# --------------------------------------------------------------------------- report
def format_report(data: dict[str, Any]) -> str:
    """Markdown summary of a ``gpu.json``: stages, fast-path errors, step-time ratios."""
    from bench.perf.gpu_steps import format_steps

    lines = ["| stage | status | s | note |", "|---|---|---:|---|"]
    for name, st in data.get("stages", {}).items():
        note = (st.get("reason") or st.get("error") or "").replace("|", "/")[:120]
        lines.append(f"| {name} | {st['status']} | {st['seconds']:.1f} | {note} |")
    fast = data.get("stages", {}).get("fast_paths", {}).get("checks", {})
    if fast:
        lines += ["", "| check | dtype | fast | reference | out err | worst grad err | tol | passed |"]
        lines.append("|---|---|---|---|---:|---:|---:|---|")
    for name, per in fast.items():
        for dtype, r in per.items():
            if "skipped" in r or "error" in r:
                lines.append(f"| {name} | {dtype} | | | | | | {r.get('skipped') or r.get('error')} |")
                continue
            lines.append(
                f"| {name} | {dtype} | {r['fast']} | {r['reference']} | {r['output_error']:.1e} | "
                f"{r['worst_grad']:.1e} | {r['tolerance']:.0e} | {'yes' if r['passed'] else '**no**'} |"
            )
    steps = data.get("stages", {}).get("step_time", {})
    if steps.get("rows"):
        lines += ["", format_steps(steps)]
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="segbench bench gpu", description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the same stages on CPU with tiny shapes")
    p.add_argument(
        "--out",
        default=None,
        help="the JSON, rewritten after each stage (default results/perf/gpu.json; "
        "with --dry-run results/perf/gpu-dry-run.json, so that it never replaces GPU figures)",
    )
    p.add_argument(
        "--wheels", default=None, help="folder of wheels / sdists installed first (pip --no-index)"
    )
    p.add_argument("--site", default=None, help="install into this folder (pip --target) instead of the env")
    p.add_argument("--no-pypi", dest="pypi", action="store_false", help="never ask PyPI for a package")
    p.add_argument("--build-s", type=float, default=0, help="seconds to build an sdist (0: do not build)")
    p.add_argument("--budget-s", type=float, default=None, help="start no stage after this many seconds")
    p.add_argument("--families", nargs="*", default=None, help="step-time families (default: all)")
    p.add_argument("--dims", type=int, default=None, help="step-time spatial dims (GPU 3, dry run 2)")
    p.add_argument("--size", type=int, default=None, help="step-time edge length (GPU 128, dry run 32)")
    p.add_argument("--batch", type=int, default=2, help="step-time batch on a GPU")
    p.add_argument("--repeats", type=int, default=10, help="timed steps after 3 warm-up steps (GPU)")
    p.add_argument("--run-timeout-s", type=float, default=420, help="limit of each `segbench run` child")
    p.add_argument("--ddp-cpu", action="store_true", help="dry run: run the DDP stage on 2 CPU ranks")
    p.add_argument("--stages", nargs="*", choices=list(STAGES), default=None, help="run only these")
    p.add_argument("--fail-stage", choices=list(STAGES), default=None, help=argparse.SUPPRESS)
    p.add_argument("--table", metavar="JSON", default=None, help="print the summary of an earlier JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the stages, print the summary; 1 when a stage failed or a fast path missed, else 0."""
    args = _parse(argv)
    if args.table:
        print(format_report(json.loads(Path(args.table).read_text())))
        return 0
    if not (args.dry_run or args.stages or torch.cuda.is_available()):
        raise NoGpuError(
            "segbench bench gpu: torch sees no GPU here; --dry-run runs the same stages on CPU "
            "(or name the stages to run with --stages)"
        )
    default = "results/perf/gpu-dry-run.json" if args.dry_run else "results/perf/gpu.json"
    ctx = Context(args, Path(args.out or default))
    ctx.data = {
        "schema": 1,
        "dry_run": ctx.dry,
        "argv": sys.argv[1:] if argv is None else list(argv),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "budget_s": args.budget_s,
        "stages": {},
    }
    chosen = {k: v for k, v in STAGES.items() if args.stages is None or k in args.stages}
    run_stages(ctx, chosen)
    ctx.data["packages_after"] = {d: _version(d) for d in VERSIONED}
    ctx.data["total_s"] = round(time.perf_counter() - ctx.started, 2)
    write_json(ctx.out, ctx.data)
    print(format_report(ctx.data))
    stages = ctx.data["stages"].values()
    failed = any(s["status"] == "failed" for s in stages)
    return int(failed or bool(ctx.data["stages"].get("fast_paths", {}).get("failed")))


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as err:
        print(err, file=sys.stderr)
        raise SystemExit(2) from None
