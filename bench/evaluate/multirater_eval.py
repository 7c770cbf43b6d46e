"""``segbench multirater``: the multi-rater (CURVAS) metrics of kept models (docs/uncertainty.md).

The runs (``--runs`` or ``--row``, as ``segbench uncertainty``) re-predict the test split of their
own dataset, which must have two or more annotators (``annotators``; every rater a case has
reaches its test batch as ``label_<rater>``). Per test case, from the ensemble's mean
probabilities (one run: its own) and every rater's label map, on the voxels inside the field of
view (all voxels without one), with the case's spacing:

* ``ece_raters``: top-label ECE (50 bins) against each rater, mean over raters (CURVAS);
* ``ece_rater_mean``: top-label ECE (10 bins) against the raters' mean label;
* ``crps_volume`` / ``crps_volume_predictive``: volume CRPS of each foreground class (keys with
  ``_<class>`` when C > 2; the plain key is the mean over foreground classes);
* ``dice_consensus`` / ``dice_unanimous``: Dice of the argmax against the strict-majority and the
  unanimous consensus, per foreground class as above.

Over cases: mean and a 95 % percentile-bootstrap interval (:func:`bootstrap_ci`: 2,000 resamples
of the cases with replacement, seed 0; NaN cases left out). Output: a record
``<results>/multirater/<name>.json`` and its table ``<name>.md``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.evaluate.predict import LoadedModel
from bench.evaluate.uncertainty_eval import (
    UncertaintyError,
    add_member_arguments,
    describe_members,
    load_test_cases,
    member_info,
    member_outputs,
    record_name,
    select_members,
    use_threads,
    write_protocol_record,
)
from bench.metrics import (
    consensus_dice,
    crps_volume,
    crps_volume_predictive,
    dice_to_consensus,
    ece_raters,
    ece_soft,
    rater_mean,
    rater_volumes,
)
from bench.records import now
from bench.records.provenance import package_versions

METRICS = (
    "ece_raters",
    "ece_rater_mean",
    "crps_volume",
    "crps_volume_predictive",
    "dice_consensus",
    "dice_unanimous",
)
BOOTSTRAP = {"resamples": 2000, "seed": 0, "level": 0.95}


def case_metrics(
    prob: np.ndarray, labels: np.ndarray, fov: np.ndarray | None, spacing: Sequence[float] | None
) -> dict[str, float]:
    """The multi-rater metrics of one case.

    Args:
        prob: ``(C, *S)`` class probabilities.
        labels: ``(R, *S)`` integer label maps of the R raters.
        fov: ``(*S)`` bool field of view or None (then every voxel counts).
        spacing: voxel size per spatial axis (None: 1).

    Returns:
        The six keys of :data:`METRICS` (per-class ``_<c>`` keys too when C > 2).
    """
    num_classes = prob.shape[0]
    if fov is not None:  # the voxels inside the field of view, flattened: (C, N) and (R, N)
        prob, labels = prob[:, fov], labels[:, fov]
    spacing_1d = None if spacing is None else float(np.prod(spacing))  # voxel volume on a flat axis
    out: dict[str, float] = {
        "ece_raters": ece_raters(prob, labels),
        "ece_rater_mean": ece_soft(prob, rater_mean(labels, num_classes)),
    }
    pred = prob.argmax(0)
    per: dict[str, list[float]] = {k: [] for k in METRICS[2:]}
    for c in range(1, num_classes):
        vols = rater_volumes(labels, c, spacing_1d)
        masks = labels == c
        values = {
            "crps_volume": crps_volume(prob[c], vols, spacing_1d),
            "crps_volume_predictive": crps_volume_predictive(prob[c], vols, spacing_1d),
            "dice_consensus": dice_to_consensus(pred == c, masks),
            "dice_unanimous": consensus_dice(pred == c, masks),
        }
        for k, v in values.items():
            per[k].append(float(v))
            if num_classes > 2:
                out[f"{k}_{c}"] = float(v)
    for k, v in per.items():
        finite = [x for x in v if math.isfinite(x)]
        out[k] = float(np.mean(finite)) if finite else math.nan
    return out


def bootstrap_ci(values: Sequence[float], resamples: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean and percentile-bootstrap interval of the finite ``values`` (cases resampled with
    replacement ``resamples`` times, ``numpy.random.default_rng(seed)``); ``n`` the finite values.
    ``mean``, ``low``, ``high`` are None when there is none."""
    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if v.size == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(v.mean()), "low": float(low), "high": float(high), "n": int(v.size)}


def case_labels(case: Any, raters: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``(R, *S)`` label maps of the raters this case has (``extras["label_<rater>"]``), and their names."""
    have = [r for r in raters if f"label_{r}" in case.extras]
    return np.stack([np.asarray(case.extras[f"label_{r}"], np.int64) for r in have]), have


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def render_markdown(record: dict[str, Any]) -> str:
    """The table of a ``multirater`` record; every number and sentence comes from the record."""
    inp, b = record["inputs"], record["inputs"]["bootstrap"]
    lines = [
        f"# Multi-rater metrics: {record['name']}",
        "",
        describe_members(record),
        f"Test cases: {len(record['cases'])} of {inp['dataset']['name']}, raters {', '.join(inp['raters'])}; "
        f"metrics inside the field of view.",
        f"Intervals: {int(b['level'] * 100)} % percentile bootstrap over cases ({b['resamples']} resamples, "
        f"seed {b['seed']}); cases with NaN left out (n).",
        "",
        "| metric | mean | 95% CI | n |",
        "|---|---:|---:|---:|",
    ]
    for key, s in record["summary"].items():
        ci = "n/a" if s["low"] is None else f"[{_fmt(s['low'])}, {_fmt(s['high'])}]"
        lines.append(f"| {key} | {_fmt(s['mean'])} | {ci} | {s['n']} |")
    if record.get("skipped"):
        lines += ["", f"Left out (fewer than 2 raters): {', '.join(record['skipped'])}."]
    return "\n".join(lines) + "\n"


def evaluate_multirater(
    results: Path, members: Sequence[LoadedModel], *, progress: bool = False
) -> tuple[Path, dict[str, Any]]:
    """Score ``members`` (their mean probabilities) against every rater of their own test split;
    write the record and its table under ``<results>/multirater/``.

    Raises:
        UncertaintyError: the runs' dataset has fewer than two annotators (names the run and dataset).
    """
    results = Path(results)
    first = members[0]
    tests = load_test_cases(first)
    raters = list(tests.dm.rater_names()) if hasattr(tests.dm, "rater_names") else []
    if len(raters) < 2:
        raise UncertaintyError(
            f"run {first.run_id}: its dataset {tests.name} has {max(len(raters), 1)} annotator(s); "
            "multirater needs two or more"
        )
    started, start = now(), time.perf_counter()
    rows, skipped = [], []
    for cid in tqdm(tests.case_ids, desc=f"multirater {tests.name}", unit="case", disable=not progress):
        case = tests.dm.case(cid)
        labels, have = case_labels(case, raters)
        if len(have) < 2:
            skipped.append(cid)
            continue
        image = np.asarray(case.image)
        prob = np.mean([member_outputs(m, image)[0].astype(np.float64) for m in members], axis=0)
        fov = None if case.fov is None else np.asarray(case.fov, bool)
        spacing = None if case.spacing is None else [float(s) for s in case.spacing]
        rows.append({"case_id": cid, "raters": have, **case_metrics(prob, labels, fov, spacing)})
    keys = [k for k in rows[0] if k not in ("case_id", "raters")] if rows else []
    cfg = first.config["config"]
    record = {
        "kind": "multirater",
        "name": record_name(members),
        "inputs": {
            "results": str(results),
            "members": member_info(members),
            "model": cfg["model"]["name"],
            "loss": cfg["loss"]["name"],
            "dataset": {"name": tests.name, "kwargs": dict(first.config.get("datamodule") or {})},
            "raters": raters,
            "bootstrap": BOOTSTRAP,
            "tta": first.module.tta,
            "torch_threads": torch.get_num_threads(),
        },
        "definitions": {
            "region": "voxels inside the field of view (all voxels without one)",
            "probabilities": "mean of the members' softmax probabilities",
            "bins": "ece_raters 50 (CURVAS), ece_rater_mean 10",
            "per_class": "crps_* and dice_* are the mean over foreground classes (keys _<c> when C > 2)",
            "interval": "percentile bootstrap of the mean over cases, NaN cases left out",
        },
        "cases": rows,
        "skipped": skipped,
        "summary": {k: bootstrap_ci([r[k] for r in rows], **_boot()) for k in keys},
        "versions": package_versions(),
        "started_at": started,
        "finished_at": now(),
        "seconds": time.perf_counter() - start,
    }
    return write_protocol_record(results, record, render_markdown(record)), record


def _boot() -> dict[str, Any]:
    return {"resamples": BOOTSTRAP["resamples"], "seed": BOOTSTRAP["seed"], "level": BOOTSTRAP["level"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segbench multirater``."""
    add_member_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """``segbench multirater``: write the record and its table, print the table."""
    use_threads()
    results = Path(args.results)
    if not results.is_dir():
        raise UncertaintyError(f"--results {results}: no such folder")
    members = select_members(results, args.runs, args.row)
    path, record = evaluate_multirater(results, members, progress=not args.quiet)
    print(render_markdown(record))
    print(f"written {path} and {path.with_suffix('.md')}")
    return 0
