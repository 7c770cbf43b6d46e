"""Speed and memory of every registered model at its default size: ``python -m bench.perf.models``.

For each model and spatial dimension (2D 256×256, 3D 64³ by default) one training step
(forward, ``mean(logits)`` backward) on a random batch of 2 is timed, on CPU and, when there is
one, on CUDA. Each (model, dims, device) runs in a fresh subprocess so memory figures do not
leak between models:

- CPU: peak resident set size during the first step minus the RSS just before it (model,
  optimiser-free weights and input already allocated), from ``resource.getrusage``;
- CUDA: ``torch.cuda.max_memory_allocated`` during the first step minus the memory allocated
  before it.

Time is the median over ``--repeats`` later steps (the first step is the warm-up).
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

_DEFAULT_SIZE = {2: 256, 3: 64}
_MIB = 2**20
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PerfRow:
    """One measurement; ``error`` is set instead of the numbers when the step failed."""

    model: str
    family: str
    dims: int
    size: int
    device: str
    params: int = 0
    seconds: float = float("nan")
    peak_mib: float = float("nan")
    error: str = ""


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / _MIB


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _step(net: torch.nn.Module, x: torch.Tensor) -> None:
    out = net(x)
    logits = out["logits"] if isinstance(out, dict) else out
    logits.float().mean().backward()
    net.zero_grad(set_to_none=True)


def measure(name: str, dims: int, size: int, device: str, batch: int, repeats: int) -> PerfRow:
    """Build ``name`` at its default size and time a training step on ``(batch, 1, size**dims)``."""
    from models import count_parameters, create_model, model_entry

    entry = model_entry(name)
    row = PerfRow(name, entry.meta["family"], dims, size, device)
    shape = (size,) * dims
    kw = {"img_size": shape} if "img_size" in inspect.signature(entry.factory).parameters else {}
    try:
        net = create_model(name, spatial_dims=dims, in_channels=1, out_channels=2, **kw).to(device).train()
        x = torch.randn(batch, 1, *shape, device=device)
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = _rss_mib()
        _step(net, x)
        if cuda:
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / _MIB
        else:
            peak = _maxrss_mib() - base
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            _step(net, x)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    except Exception as exc:  # reported in the table, the other models still run
        return replace(row, error=f"{type(exc).__name__}: {exc}"[:200])
    return replace(row, params=count_parameters(net), seconds=statistics.median(times), peak_mib=peak)


def _run_isolated(
    name: str, dims: int, size: int, device: str, batch: int, repeats: int, threads: int, timeout: float
) -> PerfRow:
    cmd = [sys.executable, "-m", "bench.perf.models", "--worker", name, str(dims), str(size), device]
    cmd += ["--batch", str(batch), "--repeats", str(repeats), "--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=_REPO_ROOT)
    except subprocess.TimeoutExpired:
        return PerfRow(name, "?", dims, size, device, error=f"timeout after {timeout:.0f}s")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return PerfRow(name, "?", dims, size, device, error=f"exit {proc.returncode}: {tail}"[:200])
    return PerfRow(**json.loads(lines[-1]))


def format_table(rows: list[PerfRow], batch: int) -> str:
    """Markdown table of the rows."""
    out = [
        f"| model | family | input (batch {batch}) | device | params | s / step | peak MiB |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        size = "×".join([str(r.size)] * r.dims)
        if r.error:
            out.append(f"| {r.model} | {r.family} | {size} | {r.device} | | | {r.error.replace('|', '/')} |")
        else:
            head = f"| {r.model} | {r.family} | {size} | {r.device}"
            out.append(f"{head} | {r.params:,} | {r.seconds:.2f} | {r.peak_mib:.0f} |")
    return "\n".join(out)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", help="model names (default: all registered)")
    p.add_argument("--dims", nargs="*", type=int, default=[2, 3], help="spatial dims to run")
    p.add_argument("--size2d", type=int, default=_DEFAULT_SIZE[2], help="2D edge length")
    p.add_argument("--size3d", type=int, default=_DEFAULT_SIZE[3], help="3D edge length")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="timed steps after the warm-up step")
    p.add_argument("--devices", nargs="*", help="default: cpu, plus cuda when available")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per model and dims")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.add_argument("--worker", nargs=4, metavar=("NAME", "DIMS", "SIZE", "DEVICE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """``segbench bench models``: run the benchmark, print a Markdown table; the exit code (0)."""
    benchmark(argv)
    return 0


def benchmark(argv: list[str] | None = None) -> list[PerfRow]:
    """Run the benchmark and print a Markdown table; returns its rows."""
    args = _parse(argv)
    if args.worker:
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        name, dims, size, device = args.worker
        print(json.dumps(asdict(measure(name, int(dims), int(size), device, args.batch, args.repeats))))
        return []
    from models import list_models, model_entry

    names = args.models or list_models()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    sizes = {2: args.size2d, 3: args.size3d}
    rows = []
    print(f"torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}", file=sys.stderr)
    for name in names:
        for dims in args.dims:
            if dims not in model_entry(name).meta["dims"]:
                continue
            for device in devices:
                row = _run_isolated(
                    name, dims, sizes[dims], device, args.batch, args.repeats, args.threads, args.timeout
                )
                result = row.error or f"{row.seconds:.2f} s, {row.peak_mib:.0f} MiB"
                print(f"{row.model} {dims}D {device}: {result}", file=sys.stderr, flush=True)
                rows.append(row)
    print(format_table(rows, args.batch))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=1)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
