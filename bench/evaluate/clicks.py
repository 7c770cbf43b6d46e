"""``segbench evaluate --clicks``: score an outside interactive method from its per-click predictions.

``--pred DIR`` holds one folder per case, ``<case_id>/click_01.<ext>`` … ``click_NN.<ext>``: the
method's label map after 1, 2, … N clicks (the numbering without gaps, any zero padding, one
supported image extension); ``--gt DIR`` holds the ground truth as for ordinary predictions. Each
click's label map is scored with the Dice of foreground class 1 (``bench.metrics.dice``: NaN when
both masks are empty), giving the case's Dice curve; a curve shorter than the protocol's 20 clicks
is continued with its last value (a method that stops keeps its last prediction). The case's row
holds the registered metrics of the ``interactive`` protocol (``noc85``, ``noc90``,
``dice_at_1/3/5``, :mod:`bench.metrics.catalog.protocols`) and ``clicks`` (N). The record is an
ordinary ``evaluation`` record (``config.protocol: interactive``), its id the hash of the config and
every input file's SHA-256, as :mod:`bench.evaluate.score` makes it.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np

from bench.evaluate.interpret import as_ground_truth, as_prediction, parse_label_map
from bench.evaluate.plan import EvaluationError, collect_cases
from bench.evaluate.score import EvaluationOutcome
from bench.metrics import METRICS, dice, reduce_cases
from bench.metrics.catalog.protocols import MAX_CLICKS
from bench.records import (
    Record,
    digest,
    evaluation_id,
    load_record,
    now,
    record_path,
    supersede,
    write_record,
)
from bench.records.provenance import device_info
from datamodules.download import file_digest
from datamodules.readers import CaseLoadError, read_array, split_extension

PROTOCOL = "interactive"
_CLICK = re.compile(r"^click_(?P<k>[0-9]+)$")


def click_files(folder: Path) -> list[Path]:
    """``folder``'s ``click_<k>.<ext>`` files in click order (k = 1, 2, … N).

    Raises:
        EvaluationError: no click file, two files for one click, or a gap in the numbering (one
            line naming the folder and the missing clicks).
    """
    found: dict[int, Path] = {}
    for path in sorted(Path(folder).iterdir()):
        parts = split_extension(path.name) if path.is_file() else None
        m = _CLICK.match(parts[0]) if parts else None
        if m is None:
            continue
        k = int(m["k"])
        if k in found:
            raise EvaluationError(f"--clicks: {folder}: {found[k].name} and {path.name} are both click {k}")
        found[k] = path
    if not found:
        raise EvaluationError(f"--clicks: {folder}: no click_<k> files")
    missing = sorted(set(range(1, max(found) + 1)) - set(found))
    if missing or min(found) < 1:
        gaps = ", ".join(str(k) for k in missing) or "0"
        raise EvaluationError(
            f"--clicks: {folder}: the clicks must be numbered 1..{max(found)} without gaps; missing {gaps}"
        )
    return [found[k] for k in sorted(found)]


def click_curve(
    files: list[Path], gt: np.ndarray, *, num_classes: int, label_map: dict[int, int] | None = None
) -> list[float]:
    """Dice of foreground class 1 after each click: ``[Dice(click_1), …]`` (label maps checked
    against ``gt (*spatial)`` as ordinary predictions are, :func:`bench.evaluate.interpret.as_prediction`)."""
    out = []
    for path in files:
        labels, _ = as_prediction(
            read_array(path).array, path, gt.shape, num_classes=num_classes, kind="label", label_map=label_map
        )
        out.append(float(dice(labels == 1, gt == 1)))
    return out


def interactive_row(curve: list[float]) -> dict[str, float]:
    """The registered ``interactive`` metrics of a Dice curve continued to :data:`MAX_CLICKS` clicks
    with its last value."""
    full = list(curve) + [curve[-1]] * max(MAX_CLICKS - len(curve), 0)
    return {m.name: float(m.fn(full)) for m in METRICS.values() if m.protocol == PROTOCOL}


def evaluate_clicks(args: argparse.Namespace) -> EvaluationOutcome:
    """``segbench evaluate --clicks --pred DIR --gt DIR --name NAME``: score every case folder and
    write (or find, unless ``--force``) the ``evaluation`` record.

    A case folder without ground truth, ground truth without case folder, and an unreadable or
    mismatched click file are listed in the record's ``problems`` (that case is not scored).

    Raises:
        EvaluationError: a missing option, a gap in a case's click numbering, or no scored case.
    """
    if args.pred is None or args.gt is None or args.dataset is not None:
        raise EvaluationError("--clicks needs --pred (one folder per case) and --gt (no --dataset)")
    if not args.name:
        raise EvaluationError("--clicks needs --name (the method's row label)")
    pred_dir = Path(args.pred)
    if not pred_dir.is_dir():
        raise EvaluationError(f"--pred {pred_dir}: not a folder")
    gts = collect_cases(Path(args.gt), args.gt_glob, args.strip_suffix, "--gt")
    folders = {p.name: p for p in sorted(pred_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    clicks = {cid: click_files(folder) for cid, folder in folders.items()}  # gaps fail here, in one line
    label_map = parse_label_map(args.label_map)
    problems = [
        {"case_id": cid, "file": str(folders[cid]), "problem": "no ground truth for this case"}
        for cid in sorted(folders.keys() - gts.keys())
    ] + [
        {"case_id": cid, "file": str(gts[cid]), "problem": f"no click folder in {pred_dir}"}
        for cid in sorted(gts.keys() - folders.keys())
    ]
    files = {
        cid: {"gt": gts[cid].name, "gt_sha256": file_digest(gts[cid])}
        | {"clicks": [p.name for p in clicks[cid]], "clicks_sha256": [file_digest(p) for p in clicks[cid]]}
        for cid in sorted(gts.keys() & folders.keys())
    }
    config = {
        "dataset": {"name": args.dataset_name or Path(args.gt).resolve().name, "kwargs": {}},
        "method": args.name,
        "protocol": PROTOCOL,
        "split": "folder",
        "label_map": label_map,
        "num_classes": args.num_classes,
    }
    run_id = evaluation_id(config["dataset"]["name"], args.name, {"config": config, "files": files})
    path = record_path(Path(args.results), run_id)
    old = load_record(path)
    if old is not None and old.done and not args.force:
        return EvaluationOutcome(old, path, existed=True)
    supersede(Path(args.results), run_id, "re-evaluated with --force")
    started, start = now(), time.perf_counter()
    rows = []
    for cid in files:
        try:
            gt = as_ground_truth(read_array(gts[cid]).array, gts[cid])
            c = args.num_classes or max(int(gt.max()) + 1, 2)
            curve = click_curve(clicks[cid], gt, num_classes=c, label_map=label_map)
        except CaseLoadError as e:
            problems.append({"case_id": cid, "file": str(folders[cid]), "problem": str(e)})
            continue
        rows.append({"case_id": cid, **interactive_row(curve), "clicks": len(curve)})
    if not rows:
        shown = "; ".join(f"{p['file']}: {p['problem']}" for p in problems[:3]) or "no cases"
        raise EvaluationError(f"no case could be evaluated ({len(problems)} problem(s)): {shown}")
    record = Record.evaluation(
        run_id,
        config_hash=digest(config),
        config={**config, "source": {"kind": "clicks", "pred_dir": str(pred_dir.resolve()), "files": files}},
        method=args.name,
        cases=rows,
        aggregates=reduce_cases(rows),
        split={"test_source": "folder", "skipped": {p["case_id"]: p["problem"] for p in problems}},
        problems=problems,
        test_seconds=time.perf_counter() - start,
        device={**device_info("cpu"), "workers": 1},
        started_at=started,
    )
    record.finished_at = now()
    return EvaluationOutcome(record, write_record(Path(args.results), record))


__all__ = ["click_curve", "click_files", "evaluate_clicks", "interactive_row"]
