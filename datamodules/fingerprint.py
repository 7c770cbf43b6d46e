"""A dataset's fingerprint and the plan nnU-Net's rules derive from it (``segbench datasets --inspect``).

:func:`fingerprint` reads every case once, as stored (no z-score, no window), and gathers what
nnU-Net's ``DatasetFingerprintExtractor`` gathers: shapes, spacings (median, anisotropy),
orientation (axis codes of the NIfTI affine), per-channel foreground intensity statistics (mean,
std, median, min, max, percentiles 0.5 / 99.5), class frequencies (voxel share, cases containing
each class), cases per group and the case count. The result is cached as JSON under
``$SEGBENCH_CACHE/fingerprints/`` (default ``~/.cache/segbench/fingerprints/``), keyed by a digest
of the names, sizes and modification times of the files under the dataset's root.

:func:`suggest` applies nnU-Net's planning rules (docs/datasets.md, "Fingerprint"):

- target spacing: the median spacing; when the lowest-resolution axis is anisotropic (its median
  spacing > 3 x the largest other one, and its median size x 3 < the smallest other one) it gets
  the 10th percentile of that axis's spacings instead (at least the largest other spacing);
- normalisation: a channel named ``CT`` is clipped to the foreground's 0.5 / 99.5 percentiles,
  then z-scored with the foreground mean and std; any other channel is z-scored per case;
- patch size: a patch of ``voxel_budget`` voxels with the same physical extent on every axis,
  capped by the median shape at the target spacing, each axis rounded up to a multiple of
  ``2**levels`` (``levels``: halvings that keep it >= 4 voxels, at most ``max_levels``); while it
  holds more than ``voxel_budget`` voxels, the axis largest relative to the median shape loses
  ``2**levels`` voxels.

:func:`sweep_snippet` writes the suggestion as a sweep entry; :func:`main` is the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from bench.registry import Entry
from datamodules.base import SegDataModule
from datamodules.generic import DatasetFileError, find_spec_file, image_folder_base
from datamodules.readers import CaseLoadError
from datamodules.registry import DATASETS, dataset_entry

FORMAT = 1
FG_SAMPLES = 10_000_000
"""Foreground voxels kept for the intensity statistics, in all, evenly per case (nnU-Net: 10^8)."""
VOXEL_BUDGET = {2: 512**2, 3: 128**3}
"""Voxels of a suggested patch (segbench's stand-in for nnU-Net's GPU memory estimate)."""
ANISOTROPY = 3.0
MIN_EDGE = 4


def cache_folder() -> Path:
    """``$SEGBENCH_CACHE/fingerprints`` (default ``~/.cache/segbench/fingerprints``)."""
    base = os.environ.get("SEGBENCH_CACHE") or Path.home() / ".cache" / "segbench"
    return Path(base) / "fingerprints"


# ---- which dataset -------------------------------------------------------------------------


def open_dataset(target: str | os.PathLike[str]) -> SegDataModule:
    """The DataModule for a registered name (its default root) or a folder (``dataset.json``:
    ``nnunet_raw``; ``images/`` + ``masks/``: ``image_folder``).

    Raises:
        DatasetFileError: neither a registered name nor a dataset folder (one line).
    """
    text = str(target)
    if text in DATASETS.names():
        entry: Entry[Any] = dataset_entry(text)
        return entry.factory()
    root = Path(text)
    if not root.is_dir():
        raise DatasetFileError(
            f"{text}: neither a dataset folder nor a registered dataset ({', '.join(DATASETS.names())})"
        )
    try:
        find_spec_file(root)
        name = "nnunet_raw"
    except DatasetFileError:
        if not (image_folder_base(root) / "images").is_dir():
            raise DatasetFileError(
                f"{root}: no dataset.json (nnunet_raw) and no images/ + masks/ (image_folder)"
            ) from None
        name = "image_folder"
    return dataset_entry(name).factory(root)


def files_digest(root: Path | None) -> str:
    """Digest of the names, sizes and modification times of the (non-hidden) files under ``root``."""
    import hashlib

    h = hashlib.sha256()
    if root is not None and root.is_dir():
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(f for f in files if not f.startswith(".")):
                st = (Path(folder) / name).stat()
                rel = os.path.relpath(Path(folder) / name, root)
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# ---- reading the cases ----------------------------------------------------------------------


def _read(dm: SegDataModule, ref: Any) -> tuple[np.ndarray, np.ndarray, tuple[float, ...] | None, Any]:
    """``(image (C, *spatial) as stored, label, spacing, affine or None)`` of one case."""
    read_raw = getattr(dm, "read_raw", None)
    if callable(read_raw):
        raw = read_raw(ref)
        return raw.image, raw.label, raw.spacing, raw.affine
    dm.raw_intensities = True  # every other DataModule: its own reader, z-score left out
    case = dm.load_case(ref)
    return case.image, case.label, case.spacing, None


def _axcodes(affine: Any) -> str | None:
    if affine is None:
        return None
    import nibabel as nib

    return "".join(str(c) for c in nib.orientations.aff2axcodes(np.asarray(affine)))


def foreground_sample(image: np.ndarray, label: np.ndarray, per_case: int, key: int) -> list[np.ndarray]:
    """The intensities of the foreground voxels (``label > 0``) of one case, per channel.

    Args:
        image: ``(C, *spatial)`` intensities as stored.
        label: ``(*spatial)`` integer labels.
        per_case: keep at most this many voxels (an evenly seeded draw, the same for the same ``key``).
        key: the case's position in the index (seeds the draw).

    Returns:
        ``C`` arrays of shape ``(n,)``, ``n <= per_case``, the same voxels in every channel.
    """
    idx = np.flatnonzero(label > 0)
    if idx.size > per_case:
        idx = np.sort(np.random.default_rng([1234, key]).choice(idx, per_case, replace=False))
    return [image[c].ravel()[idx] for c in range(image.shape[0])]


def intensity_stats(values: np.ndarray) -> dict[str, float | int | None]:
    """nnU-Net's foreground intensity statistics of ``values (n,)``: ``foreground_voxels``,
    ``mean``, ``std``, ``median``, ``min``, ``max``, ``percentile_00_5``, ``percentile_99_5``
    (None when ``values`` is empty)."""
    if values.size == 0:
        return {"foreground_voxels": 0, **dict.fromkeys(("mean", "std", "median", "min", "max"))} | {
            "percentile_00_5": None,
            "percentile_99_5": None,
        }
    v = values.astype(np.float64)
    return {
        "foreground_voxels": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "median": float(np.median(v)),
        "min": float(v.min()),
        "max": float(v.max()),
        "percentile_00_5": float(np.percentile(v, 0.5)),
        "percentile_99_5": float(np.percentile(v, 99.5)),
    }


def _summarise(rows: Sequence[Sequence[float]]) -> dict[str, list[float]]:
    a = np.asarray(rows, dtype=np.float64)
    return {"median": np.median(a, 0).tolist(), "min": a.min(0).tolist(), "max": a.max(0).tolist()}


def compute(dm: SegDataModule, *, progress: bool = True) -> dict[str, Any]:
    """The fingerprint of ``dm``'s cases (every split), read one at a time (nothing is cached)."""
    dm.prepare_data()
    refs = dm.list_cases()
    if not refs:
        raise DatasetFileError(f"{dm.name}: no cases under {dm.root}")
    dims, k = int(dm.spatial_dims), int(dm.num_classes)
    channels = list(dm.channel_names) or [f"channel_{i}" for i in range(dm.in_channels)]
    per_case = max(FG_SAMPLES // len(refs), 1)
    cases: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    counts = np.zeros(k, dtype=np.int64)
    present = np.zeros(k, dtype=np.int64)
    samples: list[list[np.ndarray]] = [[] for _ in channels]
    groups: dict[str, int] = {}
    bar = tqdm(
        refs, desc=f"fingerprint {dm.name}", unit="case", file=sys.stderr, disable=None if progress else True
    )
    for i, ref in enumerate(bar):
        try:
            image, label, spacing, affine = _read(dm, ref)
        except CaseLoadError as e:
            skipped[ref.case_id] = str(e)
            continue
        n = np.bincount(label.ravel(), minlength=k)[:k]
        counts += n
        present += n > 0
        for c, values in enumerate(foreground_sample(image, label, per_case, i)[: len(channels)]):
            samples[c].append(values)
        cases[ref.case_id] = {
            "shape": [int(s) for s in label.shape],
            "spacing": [float(s) for s in (spacing or (1.0,) * dims)],
            "orientation": _axcodes(affine),
        }
        if "group" in ref.info:
            groups[str(ref.info["group"])] = groups.get(str(ref.info["group"]), 0) + 1
    if not cases:
        raise DatasetFileError(f"{dm.name}: no readable case under {dm.root} ({len(skipped)} unreadable)")
    orient: dict[str, int] = {}
    for c in cases.values():
        if c["orientation"]:
            orient[c["orientation"]] = orient.get(c["orientation"], 0) + 1
    spacing = _summarise([c["spacing"] for c in cases.values()])
    med = spacing["median"]
    worst = int(np.argmax(med))
    others = [s for j, s in enumerate(med) if j != worst]
    total = int(counts.sum())
    return {
        "format": FORMAT,
        "dataset": dm.name,
        "root": str(dm.root) if dm.root is not None else None,
        "task": dm.task,
        "spatial_dims": dims,
        "channels": channels,
        "classes": list(dm.class_names),
        "num_cases": len(cases),
        "skipped": skipped,
        "cases": cases,
        "shape": _summarise([c["shape"] for c in cases.values()]),
        "spacing": {**spacing, "anisotropy": float(med[worst] / max(others)) if others else 1.0},
        "orientation": orient,
        "intensity": [
            {"channel": name, **intensity_stats(np.concatenate(s) if s else np.zeros(0))}
            for name, s in zip(channels, samples)
        ],
        "class_frequency": [
            {"class": name, "voxel_share": float(counts[j] / total), "cases": int(present[j])}
            for j, name in enumerate(dm.class_names)
        ],
        "groups": groups,
    }


# ---- nnU-Net's planning rules ----------------------------------------------------------------


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> tuple[list[float], bool]:
    """nnU-Net's full-resolution target spacing (``determine_fullres_target_spacing``) and whether
    the anisotropy rule changed it; ``spacings``, ``shapes``: ``(cases, dims)``."""
    target = np.percentile(spacings, 50, axis=0)
    size = np.percentile(shapes, 50, axis=0)
    worst = int(np.argmax(target))
    other = [j for j in range(len(target)) if j != worst]
    if not other:
        return target.tolist(), False
    aniso_spacing = target[worst] > ANISOTROPY * max(target[other])
    aniso_voxels = size[worst] * ANISOTROPY < min(size[other])
    if not (aniso_spacing and aniso_voxels):
        return target.tolist(), False
    t = float(np.percentile(spacings[:, worst], 10))
    if t < max(target[other]):
        t = max(max(target[other]), t) + 1e-5
    target[worst] = t
    return target.tolist(), True


def _levels(n: int, max_levels: int) -> int:
    k = 0
    while k < max_levels and n / 2 ** (k + 1) >= MIN_EDGE:
        k += 1
    return k


def _round_up(n: int, max_levels: int) -> int:
    step = 2 ** _levels(n, max_levels)
    return -(-n // step) * step


def patch_size(
    spacing: Sequence[float], median_shape: Sequence[float], voxel_budget: int, max_levels: int = 5
) -> tuple[list[int], list[int]]:
    """Suggested patch (voxels) and its levels per axis (module docstring, nnU-Net's
    ``get_plans_for_configuration`` with a voxel budget in place of its memory estimate)."""
    tmp = 1 / np.asarray(spacing, dtype=np.float64)
    initial = np.round(tmp * (voxel_budget / np.prod(tmp)) ** (1 / len(tmp))).astype(int)
    median = np.maximum(np.asarray(median_shape, dtype=np.float64), 1)
    patch = [_round_up(int(max(1, min(p, m))), max_levels) for p, m in zip(initial, median)]
    while int(np.prod(patch)) > voxel_budget:
        axis = int(np.argsort([p / m for p, m in zip(patch, median)])[-1])
        patch[axis] -= 2 ** _levels(patch[axis], max_levels)
        patch = [_round_up(max(p, 1), max_levels) for p in patch]
    return patch, [_levels(p, max_levels) for p in patch]


def suggest(fp: dict[str, Any], *, voxel_budget: int | None = None, max_levels: int = 5) -> dict[str, Any]:
    """Target spacing, patch size and normalisation from a fingerprint (nnU-Net's rules)."""
    dims = int(fp["spatial_dims"])
    budget = int(voxel_budget or VOXEL_BUDGET[dims])
    spacings = np.asarray([c["spacing"] for c in fp["cases"].values()], dtype=np.float64)
    shapes = np.asarray([c["shape"] for c in fp["cases"].values()], dtype=np.float64)
    spacing, anisotropic = target_spacing(spacings, shapes)
    resampled = np.median(np.round(spacings / np.asarray(spacing) * shapes), axis=0)
    patch, levels = patch_size(spacing, resampled, budget, max_levels)
    norm = []
    for ch in fp["intensity"]:
        if ch["channel"].casefold() == "ct" and ch["mean"] is not None:
            clip = [ch["percentile_00_5"], ch["percentile_99_5"]]
            norm.append(
                {"channel": ch["channel"], "scheme": "ct", "clip": clip, "mean": ch["mean"], "std": ch["std"]}
            )
        else:
            norm.append({"channel": ch["channel"], "scheme": "zscore_per_case"})
    return {
        "spacing": spacing,
        "anisotropic": anisotropic,
        "median_shape_at_spacing": resampled.tolist(),
        "voxel_budget": budget,
        "patch_size": patch,
        "levels": levels,
        "normalisation": norm,
    }


# ---- the command -------------------------------------------------------------------------------


def fingerprint(
    target: str | os.PathLike[str],
    *,
    refresh: bool = False,
    progress: bool = True,
    voxel_budget: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The fingerprint of a dataset folder or registered dataset, with ``suggested`` (:func:`suggest`)
    and ``cache_file``; read from the cache when the files are unchanged (``refresh``: recompute).

    Raises:
        DatasetFileError, DataArgumentError: not a dataset, or its files do not declare one (one line).
    """
    dm = open_dataset(target)
    key = f"{dm.name}-{files_digest(dm.root)}"
    path = Path(cache_dir) if cache_dir is not None else cache_folder()
    path = path / f"{key}.json"
    fp = None
    if path.is_file() and not refresh:
        try:
            fp = json.loads(path.read_text())
        except (OSError, ValueError):
            fp = None
        if not isinstance(fp, dict) or fp.get("format") != FORMAT:
            fp = None
    if fp is None:
        fp = compute(dm, progress=progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(fp, indent=1))
        tmp.replace(path)
    return {**fp, "cache_file": str(path), "suggested": suggest(fp, voxel_budget=voxel_budget)}


def _x(values: Sequence[float], fmt: str = "{:g}") -> str:
    return " × ".join(fmt.format(v) for v in values)


def sweep_snippet(fp: dict[str, Any]) -> str:
    """The suggestion as a sweep ``datasets`` entry. A volume dataset gets every suggestion as a live
    option (docs/preprocessing.md): ``patch_size``, ``spacing`` (the target spacing),
    ``orientation: RAS`` when its cases are stored in more than one orientation, and
    ``intensity: ct`` when every channel is CT; a 2D dataset has no resampling option, so its
    spacing stays a comment. Per-case z-scoring is the default and needs no line."""
    s = fp["suggested"]
    volume = int(fp.get("spatial_dims", 2)) == 3
    spacing = json.dumps([round(v, 5) for v in s["spacing"]])
    why = " (anisotropic axis: 10th percentile)" if s["anisotropic"] else " (median spacing)"
    lines = [
        f"# suggested by nnU-Net's planning rules from the fingerprint of {fp['root']} (docs/datasets.md)",
        "datasets:",
        f"  - name: {fp['dataset']}",
        f"    root: {fp['root']}",
        f"    patch_size: {json.dumps(s['patch_size'])}",
    ]
    lines.append(
        f"    spacing: {spacing}  # target spacing{why}" if volume else f"#   target spacing: {spacing}{why}"
    )
    if volume and len(fp.get("orientation") or {}) > 1:
        lines.append("    orientation: RAS  # the cases are stored in more than one orientation")
    schemes = {n["scheme"] for n in s["normalisation"]}
    if volume and schemes == {"ct"}:
        lines.append("    intensity: ct  # clip to the training foreground's 0.5 / 99.5 percentiles, z-score")
    for n in s["normalisation"]:
        if n["scheme"] == "ct":
            lo, hi = n["clip"]
            how = f"clip to [{lo:.6g}, {hi:.6g}], then (x - {n['mean']:.6g}) / {n['std']:.6g}"
            how += " (intensity: ct computes these on each run's training split)"
        else:
            how = "z-score per case (the default)"
        lines.append(f"#   normalisation {n['channel']}: {how}")
    return "\n".join(lines)


def summary(fp: dict[str, Any]) -> str:
    """A readable report of a fingerprint and its suggestion."""
    s = fp["suggested"]
    sp = fp["spacing"]
    skipped = f", {len(fp['skipped'])} unreadable (skipped)" if fp["skipped"] else ""
    out = [
        f"{fp['dataset']} at {fp['root']}: {fp['spatial_dims']}D, {fp['num_cases']} case(s){skipped}",
        f"  channels     {', '.join(fp['channels'])}",
        f"  classes      {', '.join(fp['classes'])}",
        f"  shape        median {_x(fp['shape']['median'])}, min {_x(fp['shape']['min'])}, "
        f"max {_x(fp['shape']['max'])}",
        f"  spacing      median {_x(sp['median'])}, min {_x(sp['min'])}, max {_x(sp['max'])}, "
        f"anisotropy {sp['anisotropy']:.3g}",
        "  orientation  " + (", ".join(f"{k}: {v}" for k, v in fp["orientation"].items()) or "not stored"),
    ]
    for ch in fp["intensity"]:
        if ch["mean"] is None:
            out.append(f"  intensity    {ch['channel']}: no foreground voxel")
            continue
        out.append(
            f"  intensity    {ch['channel']} (foreground): mean {ch['mean']:.6g}, std {ch['std']:.6g}, "
            f"0.5 % {ch['percentile_00_5']:.6g}, 99.5 % {ch['percentile_99_5']:.6g}"
        )
    for c in fp["class_frequency"]:
        out.append(
            f"  class        {c['class']}: {100 * c['voxel_share']:.4g} % of voxels, in {c['cases']} case(s)"
        )
    if fp["groups"]:
        out.append("  groups       " + ", ".join(f"{g}: {n}" for g, n in sorted(fp["groups"].items())))
    out.append(
        f"  suggested    spacing {_x(s['spacing'], '{:.4g}')}, patch {_x(s['patch_size'])} "
        f"(levels {', '.join(map(str, s['levels']))}; budget {s['voxel_budget']} voxels)"
    )
    out += [f"  cached       {fp['cache_file']}", "", sweep_snippet(fp)]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``segbench datasets --inspect ROOT|NAME [--json] [--refresh] [--voxel-budget N]``: print the
    fingerprint (a summary, or JSON) with a progress bar over the cases on stderr; returns 0.

    Errors (not a dataset, a bad ``dataset.json``) are raised as one-line user errors."""
    p = argparse.ArgumentParser(prog="segbench datasets --inspect", description=__doc__.splitlines()[0])
    p.add_argument("target", metavar="ROOT|NAME", help="a dataset folder or a registered dataset name")
    p.add_argument("--json", action="store_true", help="print the fingerprint as JSON")
    p.add_argument("--refresh", action="store_true", help="recompute even when a cached fingerprint fits")
    p.add_argument("--voxel-budget", type=int, default=None, help="voxels of the suggested patch")
    args = p.parse_args(argv)
    fp = fingerprint(args.target, refresh=args.refresh, voxel_budget=args.voxel_budget)
    print(json.dumps(fp, indent=1) if args.json else summary(fp))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except ValueError as e:  # a user error: one line (the segbench command line does the same)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
