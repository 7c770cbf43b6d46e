"""Peak memory and loader throughput of a 3D DataModule with and without the disk cache (docs/cache.md).

Generates an nnU-Net v2 raw dataset (``dataset.json``, ``imagesTr/case_XXX_0000.nii.gz``,
``labelsTr/case_XXX.nii.gz``) of N volumes of S³ voxels into a temp folder, then, for each N, in a
fresh child process each:

- **fill**: ``NnunetRawDataModule(root).setup()`` with an empty disk cache (decodes and writes
  every case: the fill time);
- **disk cache**: ``setup()`` on the filled cache, then one training epoch of the train loader;
- **in memory**: the same with ``disk_cache=False`` (every case decoded into RAM, as before the
  disk cache).

Peak RSS is the child's ``ru_maxrss`` (its own process; with ``--workers`` the workers' peak is
reported apart). Throughput is training patches per second over the epoch (no model).

    python -m bench.perf.data_memory                       # N = 50, 100, 200; S = 128 (~4 GB disk)
    python -m bench.perf.data_memory --cases 3 4 --size 16 --patch 8 --samples 4   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FLAT_TOLERANCE = 0.2
"""Cached peak RSS counts as flat when the largest N's peak is within this fraction of the smallest's."""
RSS_LIMIT_MB = 2000.0
MODES = ("fill", "disk cache", "in memory")


def write_dataset(folder: Path, n: int, size: int, seed: int = 0) -> None:
    """N volumes ``size³`` in nnU-Net v2 raw layout: int16 CT-like images (smooth shading plus
    noise), labels 0 / 1 / 2 from a few random balls, 1 mm isotropic."""
    import nibabel as nib

    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "data_memory",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "vessel": 1, "tumour": 2},
        "numTraining": n,
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(spec, indent=1))
    grid = np.stack(np.meshgrid(*[np.arange(size, dtype=np.float32)] * 3, indexing="ij"))  # (3, S, S, S)
    affine = np.eye(4)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        shade = np.tensordot(rng.normal(size=3).astype(np.float32), grid, axes=1)  # (S, S, S)
        image = 40 + shade + rng.normal(0, 20, size=grid.shape[1:])
        label = np.zeros(grid.shape[1:], dtype=np.uint8)
        for cls in (1, 1, 2):
            centre = rng.uniform(0.2, 0.8, size=3) * size
            radius = rng.uniform(0.05, 0.15) * size
            ball = ((grid - centre[:, None, None, None].astype(np.float32)) ** 2).sum(0) <= radius**2
            label[ball] = cls
            image[ball] += 60 * cls
        name = f"case_{i:03d}"
        nib.save(nib.Nifti1Image(image.astype(np.int16), affine), folder / "imagesTr" / f"{name}_0000.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), folder / "labelsTr" / f"{name}.nii.gz")


def subset(source: Path, folder: Path, n: int) -> Path:
    """A dataset folder with the first ``n`` cases of ``source`` (symbolic links, no copies)."""
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    spec = json.loads((source / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({**spec, "numTraining": n}, indent=1))
    for i in range(n):
        for sub, name in (("imagesTr", f"case_{i:03d}_0000.nii.gz"), ("labelsTr", f"case_{i:03d}.nii.gz")):
            (folder / sub / name).symlink_to(source / sub / name)
    return folder


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def measure(root: str, cache_dir: str, mode: str, opts: dict[str, Any], out: Any) -> None:
    """Child process: build the DataModule, ``setup()`` and (not for ``fill``) one training epoch;
    puts ``{setup_s, epoch_s, patches, peak_rss_mb, base_rss_mb, workers_rss_mb}`` on ``out``."""
    import torch

    from datamodules import create_datamodule

    torch.set_num_threads(1)
    base = _peak_mb(resource.RUSAGE_SELF)
    patch = (opts["patch"],) * 3
    dm = create_datamodule(
        "nnunet_raw",
        root=root,
        cache_dir=cache_dir,
        patch_size=patch,
        batch_size=opts["batch_size"],
        samples_per_epoch=opts["samples"],
        num_workers=opts["workers"],
        num_folds=1,
        disk_cache=mode != "in memory",
    )
    t0 = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - t0
    patches, epoch_s = 0, float("nan")
    if mode != "fill":
        t0 = time.perf_counter()
        for batch in dm.train_dataloader():
            patches += int(batch["image"].shape[0])
        epoch_s = time.perf_counter() - t0
    out.put(
        {
            "setup_s": setup_s,
            "epoch_s": epoch_s,
            "patches": patches,
            "peak_rss_mb": _peak_mb(resource.RUSAGE_SELF),
            "base_rss_mb": base,
            "workers_rss_mb": _peak_mb(resource.RUSAGE_CHILDREN),
        }
    )


def run_child(root: Path, cache_dir: Path, mode: str, opts: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure` in a fresh process (``opts["start_method"]``); raises when the child fails."""
    ctx = mp.get_context(opts["start_method"])
    out = ctx.Queue()
    proc = ctx.Process(target=measure, args=(str(root), str(cache_dir), mode, opts, out))
    proc.start()
    result, deadline = None, time.monotonic() + opts["timeout"]
    while result is None and time.monotonic() < deadline:
        try:
            result = out.get(timeout=1.0)
        except queue.Empty:
            if not proc.is_alive():
                break
    proc.join(timeout=60)
    if result is None or proc.exitcode != 0:
        raise RuntimeError(f"data_memory: the {mode!r} child for {root} failed (exit code {proc.exitcode})")
    return result


def _row(n: int, mode: str, r: dict[str, Any]) -> str:
    rate = r["patches"] / r["epoch_s"] if r["patches"] else float("nan")
    epoch = "-" if mode == "fill" else f"{r['epoch_s']:.2f}"
    speed = "-" if mode == "fill" else f"{rate:.1f}"
    return (
        f"| {n} | {mode} | {r['setup_s']:.2f} | {epoch} | {speed} | {r['base_rss_mb']:.0f} "
        f"| {r['peak_rss_mb']:.0f} |"
    )


def report(results: dict[int, dict[str, dict[str, Any]]], opts: dict[str, Any]) -> list[str]:
    """The table of every child, the ratios per N and the verdicts, as markdown lines."""
    lines = [
        f"volumes {opts['size']}^3, patch {opts['patch']}^3, {opts['samples']} patches per epoch, "
        f"batch {opts['batch_size']}, workers {opts['workers']}, children started by {opts['start_method']}",
        "",
        "| N | loader | setup s | epoch s | patches/s | RSS after imports MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, by_mode in results.items():
        lines += [_row(n, mode, by_mode[mode]) for mode in MODES]
    lines += ["", "| N | RSS in memory / disk cache | patches/s disk cache / in memory |", "|---|---|---|"]
    speed = {}
    for n, by_mode in results.items():
        cached, mem = by_mode["disk cache"], by_mode["in memory"]
        speed[n] = (cached["patches"] / cached["epoch_s"]) / (mem["patches"] / mem["epoch_s"])
        lines.append(f"| {n} | {mem['peak_rss_mb'] / cached['peak_rss_mb']:.2f} | {speed[n]:.2f} |")
    peaks = [by_mode["disk cache"]["peak_rss_mb"] for by_mode in results.values()]
    flat = max(peaks) <= min(peaks) * (1 + FLAT_TOLERANCE)
    below = max(peaks) < RSS_LIMIT_MB
    fast = all(s >= 1.0 for s in speed.values())
    lines += [
        "",
        f"disk cache peak RSS flat across N (within {FLAT_TOLERANCE:.0%}): {'yes' if flat else 'no'} "
        f"({min(peaks):.0f}-{max(peaks):.0f} MB)",
        f"disk cache peak RSS below {RSS_LIMIT_MB / 1000:.0f} GB: {'yes' if below else 'no'}",
        f"disk cache throughput at least the in-memory loader's at every N: {'yes' if fast else 'no'} "
        f"(ratios {', '.join(f'{s:.2f}' for s in speed.values())})",
    ]
    if opts["workers"]:
        lines.append("peak RSS is the main process; DataLoader workers are separate processes")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="segbench bench data_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, nargs="+", default=[50, 100, 200], help="dataset sizes N")
    p.add_argument("--size", type=int, default=128, help="volume edge S (voxels)")
    p.add_argument("--patch", type=int, default=64, help="training patch edge (voxels)")
    p.add_argument("--samples", type=int, default=64, help="patches per epoch")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--folder", default=None, help="where the data and caches go (default: a new temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated data and caches")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds one child may take")
    p.add_argument(
        "--start-method",
        choices=("spawn", "fork"),
        default="spawn",
        help="how children start: spawn (a fresh interpreter: the figures) or fork (from a parent that "
        "imported torch once: a quick smoke run; every RSS then includes the parent's imports)",
    )
    args = p.parse_args(argv)
    if min(args.cases) < 1 or args.size < 1 or args.patch < 1 or args.samples < 1 or args.batch_size < 1:
        p.error("--cases, --size, --patch, --samples and --batch-size must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the data, run the children, print the table; returns 0."""
    args = parse_args(argv)
    opts = {
        "size": args.size,
        "patch": args.patch,
        "samples": args.samples,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "timeout": args.timeout,
        "start_method": args.start_method,
    }
    if args.start_method == "fork":
        import datamodules  # noqa: F401  (imported once, before the children fork)
    work = Path(args.folder or tempfile.mkdtemp(prefix="segbench-data-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        write_dataset(work / "source", max(args.cases), args.size)
        took = time.perf_counter() - t0
        print(f"generated {max(args.cases)} volumes in {took:.1f} s under {work}", flush=True)
        results: dict[int, dict[str, dict[str, Any]]] = {}
        for n in sorted(set(args.cases)):
            root = subset(work / "source", work / f"n{n}", n)
            results[n] = {}
            for mode in MODES:
                cache = work / f"cache_n{n}" if mode != "in memory" else work / f"splits_n{n}"
                results[n][mode] = run_child(root, cache, mode, opts)
                print(_row(n, mode, results[n][mode]), flush=True)
                if mode == "fill":
                    os.sync()  # the fill's write-back must not slow the next child's reads
        print("\n".join(["", *report(results, opts)]))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
