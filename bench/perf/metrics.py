"""Speed and equality of segbench metrics against their references (not a test).

Run ``python -m bench.perf.metrics [--sizes 128 256] [--drive-case 01]``. Each metric and
its reference run in the same process on: one DRIVE retina case (observer 2 as the
prediction of observer 1, 584×565) and synthetic 3D vessel trees (random tubes) of the
requested edge lengths. Prints two markdown tables: the whole ``case_metrics`` next to
scikit-image's skeletonisation of both masks alone (the part clDice cannot avoid; issue 4
asks for a ratio <= 1.5 at 256³), and per metric: case, ours s, reference s, ratio, equal.
``--skip-reference`` prints only the first table.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from skimage.morphology import skeletonize

from bench.metrics import (
    betti_numbers,
    case_metrics,
    cldice,
    expected_calibration_error,
    hd95,
    normalized_surface_dice,
)
from bench.perf.references import gudhi_betti, monai_hd95, monai_nsd, paper_cldice, torchmetrics_ece

DRIVE = Path("/work/shared/data/DRIVE")


def random_tubes(
    size: int, n_tubes: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic 3D vessel-like volume.

    Returns:
        ``(gt, pred, prob)``: ``gt`` bool tubes (random smooth curves, radius 1.5–3.5
        voxels), ``pred`` a perturbed copy (noisy radius: thinned gaps, merges, blobs),
        ``prob`` float32 foreground probability whose argmax-threshold is ``pred``.
    """
    rng = np.random.default_rng(seed)
    n_tubes = n_tubes or max(4, round(12 * (size / 128) ** 2))  # keeps the vessel fraction ~2 %
    centre = np.zeros((size,) * 3, bool)
    radius = np.zeros((size,) * 3, np.float32)
    for _ in range(n_tubes):
        ctrl = rng.uniform(0, size - 1, (5, 3))
        t = np.linspace(0, 1, 8 * size)[:, None]
        # quartic Bezier curve through random control points
        coeff = [1, 4, 6, 4, 1]
        curve = sum(c * (1 - t) ** (4 - k) * t**k * ctrl[k] for k, c in enumerate(coeff))
        idx = np.clip(np.rint(curve).astype(int), 0, size - 1)
        centre[tuple(idx.T)] = True
        radius[tuple(idx.T)] = rng.uniform(1.5, 3.5)
    dist, nearest = ndimage.distance_transform_edt(~centre, return_indices=True)
    r = radius[tuple(nearest)]
    gt = dist <= r
    noise = ndimage.gaussian_filter(rng.normal(size=gt.shape).astype(np.float32), 4) * 40
    margin = r + noise - dist
    prob = (1 / (1 + np.exp(-1.5 * margin))).astype(np.float32)
    return gt, prob > 0.5, prob


def drive_case(case: str = "01") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DRIVE test case: (observer-1 truth, observer-2 mask as prediction, smooth probability)."""
    from PIL import Image

    def read(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path).convert("L")) > 127

    gt = read(DRIVE / "test/1st_manual" / f"{case}_manual1.gif")
    pred = read(DRIVE / "test/2nd_manual" / f"{case}_manual2.gif")
    smooth = ndimage.gaussian_filter(pred.astype(np.float32), 1.0)
    prob = np.clip(0.05 + 0.9 * smooth, 0, 1).astype(np.float32)
    return gt, pred, prob


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def _equal(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, tuple):
        return a == b
    return bool(np.isclose(a, b, rtol=tol, atol=tol, equal_nan=True))


def bench_case(name: str, gt: np.ndarray, pred: np.ndarray, prob: np.ndarray, repeat: int) -> list[tuple]:
    """Times every metric and its reference on one case; returns table rows."""
    sp = (1.0,) * gt.ndim
    prob64 = prob.astype(np.float64)  # torchmetrics sums in the input dtype; float64 is its exact value
    checks: list[tuple[str, Callable[[], Any], Callable[[], Any], float]] = [
        ("betti_numbers vs gudhi", lambda: betti_numbers(pred), lambda: gudhi_betti(pred), 0.0),
        ("cldice vs paper+skimage", lambda: cldice(pred, gt), lambda: paper_cldice(pred, gt), 1e-12),
        (
            "ece vs torchmetrics",
            lambda: expected_calibration_error(prob, gt),
            lambda: torchmetrics_ece(prob64, gt),
            1e-6,
        ),
        ("hd95 vs MONAI", lambda: hd95(pred, gt, spacing=sp), lambda: monai_hd95(pred, gt, sp), 1e-6),
        (
            "nsd vs MONAI",
            lambda: normalized_surface_dice(pred, gt, 1.0, spacing=sp),
            lambda: monai_nsd(pred, gt, 1.0, sp),
            1e-6,
        ),
    ]
    rows = []
    for metric, ours_fn, ref_fn, tol in checks:
        ours, t_ours = _timed(ours_fn, repeat)
        ref, t_ref = _timed(ref_fn, 1)
        rows.append((metric, name, t_ours, t_ref, t_ref / t_ours, _equal(ours, ref, tol), ours, ref))
        print(f"  {metric:26s} {name:22s} ours {t_ours:8.3f}s ref {t_ref:8.3f}s  {ours} / {ref}", flush=True)
    return rows


EVAL_TARGET = 1.5  # issue 4: case_metrics within 1.5x of skeletonising both masks with skimage
EVAL_HEADER = (
    "case_metrics s (all metrics, 2-channel probabilities) | skeletonize pred+gt (skimage) s | "
    f"ratio | ratio <= {EVAL_TARGET}"
)


def bench_case_metrics(
    name: str, gt: np.ndarray, pred: np.ndarray, prob: np.ndarray, repeat: int
) -> list[str]:
    """Times the whole ``case_metrics`` and skimage's skeletonisation of both masks alone.

    The two are timed alternately (best of ``repeat`` each), so that both see the same load.

    Returns:
        One table row: case, case_metrics s, skeletonisation s, ratio, whether ratio <= target.
    """
    two, g8 = np.stack([1 - prob, prob]), gt.astype(np.uint8)
    t_eval = t_skel = float("inf")
    for _ in range(repeat):
        t_eval = min(t_eval, _timed(lambda: case_metrics(two, g8), 1)[1])
        t_skel = min(t_skel, _timed(lambda: (skeletonize(pred), skeletonize(gt)), 1)[1])
    ratio = t_eval / t_skel
    print(f"  case_metrics {name:22s} {t_eval:8.3f}s skeletonize pred+gt {t_skel:8.3f}s ratio {ratio:.2f}")
    ok = "yes" if ratio <= EVAL_TARGET else "NO"
    return [name, f"{t_eval:.2f}", f"{t_skel:.2f}", f"{ratio:.2f}", ok]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 256], help="3D edge lengths")
    parser.add_argument("--drive-case", default="01", help="DRIVE test case id; '' to skip")
    parser.add_argument("--repeat", type=int, default=3, help="best-of repeats for our timings")
    parser.add_argument(
        "--skip-reference",
        action="store_true",
        help="only the case_metrics vs skeletonisation table (no per-metric references)",
    )
    args = parser.parse_args(argv)
    cases = []
    if args.drive_case and DRIVE.exists():
        cases.append((f"DRIVE {args.drive_case} 584x565", *drive_case(args.drive_case)))
    for size in args.sizes:
        gt, pred, prob = random_tubes(size)
        cases.append((f"tubes {size}^3", gt, pred, prob))
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    tiny = np.zeros((8, 8), bool)
    tiny[2:5, 2:5] = True
    bench_case("warm-up (imports)", tiny, tiny, np.where(tiny, 0.9, 0.1).astype(np.float32), 1)
    rows = []
    if not args.skip_reference:
        rows = [
            row for name, gt, pred, prob in cases for row in bench_case(name, gt, pred, prob, args.repeat)
        ]
    case_rows = [bench_case_metrics(name, gt, pred, prob, args.repeat) for name, gt, pred, prob in cases]
    print(f"\n| case | {EVAL_HEADER} |")
    print("|---|---:|---:|---:|---|")
    for row in case_rows:
        print("| " + " | ".join(row) + " |")
    if not rows:
        return 0
    print("\n| metric | case | ours s | reference s | ratio | equal |")
    print("|---|---|---:|---:|---:|---|")
    for metric, name, t_ours, t_ref, ratio, equal, _, _ in rows:
        print(
            f"| {metric} | {name} | {t_ours:.3f} | {t_ref:.3f} | {ratio:.1f}x | {'yes' if equal else 'NO'} |"
        )
    return 0 if all(row[5] for row in rows) else 1  # a reference that disagrees fails the command


if __name__ == "__main__":
    raise SystemExit(main())
