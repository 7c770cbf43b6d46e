"""``segbench evaluate``: score a folder of predictions made elsewhere, or a second annotator,
with segbench's own metrics, as one ``evaluation`` record that the leaderboard shows as a row.

Three sources of ground truth (docs/evaluate.md):

- ``--pred DIR --gt DIR``: two folders matched by case id (file stem minus ``--strip-suffix``);
- ``--pred DIR --dataset NAME``: the DataModule's cases of ``--split`` (default ``test``) with
  their field of view, spacing and classes, so a prediction is scored exactly as a trained model
  on that split;
- ``--dataset NAME --rater OTHER``: the human baseline, the other annotator's label of every
  case scored against the dataset's default label (record ``baseline: "human"``).

Mismatches are never skipped silently: predictions without ground truth, ground truth without
prediction (``--missing report`` leaves the case out, ``--missing empty`` scores an all-background
prediction), unreadable files, shape or spacing differences and unexpected label values are each
listed by file in the record's ``problems`` and on stdout. Cases run in ``--workers`` processes
(each reads its own files: one case in memory per worker) with a progress bar.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import re
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from bench.imageio import (
    PRED_KINDS,
    PredictionFileError,
    as_ground_truth,
    as_prediction,
    case_id_of,
    check_label_values,
    parse_label_map,
    read_array,
    sha256_of,
    spacings_match,
)
from bench.metrics import evaluate_case, reduce_cases
from bench.provenance import device_info
from bench.store import new_record, now, read_record, record_path, write_json_atomic

MISSING_POLICIES = ("report", "empty")


class EvaluationError(ValueError):
    """A user mistake in ``segbench evaluate`` (bad folder, option or ambiguous files)."""


@dataclass(frozen=True)
class EvalSettings:
    """The ``evaluate_case`` settings of a row (the same fields as a run's ``eval`` config)."""

    betti_patch: int | None = None
    nsd_tolerance: float = 1.0


@dataclass(frozen=True)
class CaseTask:
    """One case for a worker: where its prediction and ground truth come from."""

    case_id: str
    pred: str | None = None  # prediction file; None: the rater's label or an empty prediction
    gt: str | None = None  # ground-truth file; None: the DataModule's case
    empty: bool = False  # no prediction: score an all-background one (--missing empty)
    save: str | None = None  # write the prediction npz here (--save-predictions)


@dataclass(frozen=True)
class WorkerContext:
    """Everything a worker needs besides the task (small and picklable)."""

    settings: EvalSettings
    num_classes: int
    pred_kind: str = "auto"
    label_map: dict[int, int] | None = None
    spacing: tuple[float, ...] | None = None  # --spacing for ground truth without a header
    dataset: tuple[str, dict[str, Any]] | None = None  # (name, kwargs): rebuilt in each worker
    rater: str | None = None


@dataclass
class CaseResult:
    """A worker's answer: a metrics row or a problem ``{case_id, file, problem}``."""

    case_id: str
    row: dict[str, Any] | None = None
    problem: dict[str, str] | None = None
    kind: str | None = None


@dataclass
class EvaluationPlan:
    """What will be evaluated: the record's identity plus the tasks and the mismatches found so far."""

    dataset: str
    dataset_kwargs: dict[str, Any]
    method: str
    split: str | None
    context: WorkerContext
    tasks: list[CaseTask]
    problems: list[dict[str, str]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    split_info: dict[str, Any] = field(default_factory=dict)
    baseline: str | None = None
    datamodule: Any = None  # dataset mode: the set-up DataModule (shared with forked workers)
    truth_ids: list[str] = field(default_factory=list)  # every ground-truth case id


# ---- the per-case work (runs in the workers) ---------------------------------------------

_STATE: dict[str, Any] = {}
# Set in the parent before the pool starts: forked workers inherit its set-up DataModule (its
# cases copy-on-write) instead of loading the dataset again.
_PARENT: dict[str, Any] = {}


def _init_worker(ctx: WorkerContext, isolate: bool) -> None:
    """Per-process setup: the context and, in dataset mode, the set-up DataModule."""
    if isolate:  # N workers already use the cores: no metric child processes, one torch thread
        os.environ["SEGBENCH_METRICS_FORK"] = "0"
        import torch

        torch.set_num_threads(1)
    _STATE.clear()
    _STATE["ctx"] = ctx
    if ctx.dataset is not None:
        dm = _PARENT.get("dm")
        if dm is None:  # a spawned worker (no fork on this platform) sets up its own
            from datamodules import create_datamodule

            dm = create_datamodule(ctx.dataset[0], **ctx.dataset[1])
            dm.setup("test")
        _STATE["dm"] = dm


def _load_truth(task: CaseTask, ctx: WorkerContext) -> tuple[np.ndarray, Any, Any, dict[str, Any]]:
    """(labels, fov, spacing, extras) of one case, from its file or from the DataModule
    (``extras`` then holds its annotators ``label_<name>`` and ``image`` (first channel))."""
    if task.gt is not None:
        f = read_array(task.gt)
        return as_ground_truth(f.array, task.gt), None, f.spacing or ctx.spacing, {}
    case = _STATE["dm"].case(task.case_id)
    return case.label, case.fov, case.spacing, {**case.extras, "image": case.image[0]}


def _save_prediction(
    path: str, pred: np.ndarray, gt: np.ndarray, fov: Any, spacing: Sequence[float], image: Any
) -> None:
    """The record's prediction file: ``pred``/``label`` uint8 (*spatial), ``prob`` float16 (C, *spatial)
    for probability maps, ``image`` float16 (dataset mode), ``fov`` bool, ``spacing`` float64."""
    arrays: dict[str, np.ndarray] = {"label": gt.astype(np.uint8), "spacing": np.asarray(spacing, np.float64)}
    if pred.ndim == gt.ndim + 1:
        arrays["pred"] = np.argmax(pred, axis=0).astype(np.uint8)
        arrays["prob"] = pred.astype(np.float16)
    else:
        arrays["pred"] = pred.astype(np.uint8)
    if image is not None:
        arrays["image"] = np.asarray(image, np.float16)
    if fov is not None:
        arrays["fov"] = np.asarray(fov, bool)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def _run_task(task: CaseTask) -> CaseResult:
    """Read, check and score one case; every failure becomes a problem naming the file."""
    ctx: WorkerContext = _STATE["ctx"]
    where = task.gt or f"{ctx.dataset[0] if ctx.dataset else '?'}:{task.case_id}"
    try:
        gt, fov, spacing, extras = _load_truth(task, ctx)
        check_label_values(gt, ctx.num_classes, where)
        spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * gt.ndim
        if ctx.rater is not None:
            if f"label_{ctx.rater}" not in extras:
                raise PredictionFileError(f"{where}: no annotation by rater {ctx.rater!r} for this case")
            pred, kind = extras[f"label_{ctx.rater}"], "rater"
        elif task.empty:
            pred, kind = np.zeros(gt.shape, np.int64), "empty"
        else:
            where = task.pred or where
            f = read_array(where)
            if f.spacing is not None and not spacings_match(f.spacing, spacing):
                raise PredictionFileError(
                    f"{where}: spacing {tuple(round(s, 6) for s in f.spacing)} differs from the ground "
                    f"truth's {tuple(round(s, 6) for s in spacing)}"
                )
            pred, kind = as_prediction(
                f.array,
                where,
                gt.shape,
                num_classes=ctx.num_classes,
                kind=ctx.pred_kind,
                label_map=ctx.label_map,
            )
        s = ctx.settings
        row = evaluate_case(
            pred,
            gt,
            spacing=spacing,
            fov=fov,
            betti_patch=s.betti_patch,
            nsd_tolerance=s.nsd_tolerance,
            num_classes=ctx.num_classes,
        )
        if task.save:
            _save_prediction(task.save, pred, gt, fov, spacing, extras.get("image"))
    except (ValueError, OSError) as e:  # PredictionFileError, CaseLoadError, metric input errors
        return CaseResult(task.case_id, problem={"case_id": task.case_id, "file": where, "problem": str(e)})
    return CaseResult(task.case_id, row={"case_id": task.case_id, **row}, kind=kind)


def _max_label(path: str) -> int:
    f = read_array(path)
    return int(as_ground_truth(f.array, path).max(initial=0))


def _map_cases(
    fn: Any, items: Sequence[Any], ctx: WorkerContext, workers: int, progress: bool, desc: str
) -> list[Any]:
    """``[fn(item)]`` in ``workers`` processes (in this process for one), with a progress bar."""
    bar = tqdm(total=len(items), desc=desc, unit="case", disable=not progress)
    try:
        if workers <= 1 or len(items) <= 1:
            _init_worker(ctx, isolate=False)
            out = []
            for item in items:
                out.append(fn(item))
                bar.update()
            return out
        method = "fork" if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(
            max_workers=min(workers, len(items)),
            mp_context=mp.get_context(method),
            initializer=_init_worker,
            initargs=(ctx, True),
        ) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            out = [None] * len(items)
            for fut in as_completed(futures):
                out[futures[fut]] = fut.result()
                bar.update()
            return out
    finally:
        bar.close()
        _STATE.clear()


# ---- planning: which files belong to which case ------------------------------------------


def collect_cases(folder: Path, pattern: str, strip: Sequence[str], option: str) -> dict[str, Path]:
    """``{case_id: file}`` of the supported files matching ``pattern`` in ``folder`` (not recursive).

    Raises:
        EvaluationError: ``folder`` is not a folder, or two files give the same case id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{option} {folder}: not a folder")
    out: dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        cid = case_id_of(path, strip) if path.is_file() and not path.name.startswith(".") else None
        if cid is None:
            continue  # other file types (nnU-Net's plans.json, .pkl) are not predictions
        if cid in out:
            raise EvaluationError(
                f"{option}: {out[cid]} and {path} both give case id {cid!r}; "
                "narrow the glob or change --strip-suffix"
            )
        out[cid] = path
    return out


def _match(
    preds: dict[str, Path], truth: dict[str, tuple[str | None, str]], missing: str, pred_dir: Path
) -> tuple[list[CaseTask], list[dict[str, str]]]:
    """Tasks for the matched cases plus a problem for every unmatched file or case.

    ``truth``: ``{case_id: (ground-truth file or None for a DataModule case, its name in messages)}``.
    """
    tasks, problems = [], []
    for cid in sorted(preds.keys() - truth.keys()):
        problems.append({"case_id": cid, "file": str(preds[cid]), "problem": "no ground truth for this case"})
    for cid in sorted(truth):
        gt, shown = truth[cid]
        if cid in preds:
            tasks.append(CaseTask(cid, pred=str(preds[cid]), gt=gt))
            continue
        scored = " (scored as an empty prediction, --missing empty)" if missing == "empty" else ""
        problems.append({"case_id": cid, "file": shown, "problem": f"no prediction in {pred_dir}{scored}"})
        if missing == "empty":
            tasks.append(CaseTask(cid, gt=gt, empty=True))
    return tasks, problems


def _check_common(missing: str, pred_kind: str, workers: int) -> None:
    if missing not in MISSING_POLICIES:
        raise EvaluationError(f"--missing must be one of {MISSING_POLICIES}, got {missing!r}")
    if pred_kind not in PRED_KINDS:
        raise EvaluationError(f"--pred-kind must be one of {PRED_KINDS}, got {pred_kind!r}")
    if workers < 1:
        raise EvaluationError(f"--workers must be >= 1, got {workers}")


def plan_folders(
    pred_dir: Path,
    gt_dir: Path,
    *,
    method: str,
    pred_glob: str = "*",
    gt_glob: str = "*",
    strip_suffix: Sequence[str] = (),
    label_map: dict[int, int] | None = None,
    pred_kind: str = "auto",
    missing: str = "report",
    num_classes: int | None = None,
    spacing: Sequence[float] | None = None,
    settings: EvalSettings = EvalSettings(),
    dataset_name: str | None = None,
    workers: int = 1,
    progress: bool = False,
) -> EvaluationPlan:
    """Plan ``--pred DIR --gt DIR``: match files by case id; C = ``num_classes`` or the largest
    ground-truth label + 1 (at least 2; a pass over the ground truth in ``workers`` processes)."""
    _check_common(missing, pred_kind, workers)
    preds = collect_cases(pred_dir, pred_glob, strip_suffix, "--pred")
    gts = collect_cases(gt_dir, gt_glob, strip_suffix, "--gt")
    if not gts:
        raise EvaluationError(f"--gt {gt_dir}: no ground-truth files match {gt_glob!r}")
    if num_classes is None:
        ctx0 = WorkerContext(settings, 2)
        try:
            labels = _map_cases(
                _max_label, [str(p) for p in gts.values()], ctx0, workers, progress, "classes"
            )
        except PredictionFileError as e:
            raise EvaluationError(
                f"{e} (every ground-truth file must be readable; or pass --num-classes)"
            ) from e
        num_classes = max(max(labels) + 1, 2)
    elif num_classes < 2:
        raise EvaluationError(f"--num-classes must be >= 2, got {num_classes}")
    tasks, problems = _match(preds, {k: (str(v), str(v)) for k, v in gts.items()}, missing, Path(pred_dir))
    ctx = WorkerContext(
        settings,
        int(num_classes),
        pred_kind,
        label_map,
        tuple(float(s) for s in spacing) if spacing else None,
    )
    source = {
        "kind": "folders",
        "pred_dir": str(Path(pred_dir).resolve()),
        "gt_dir": str(Path(gt_dir).resolve()),
        "pred_glob": pred_glob,
        "gt_glob": gt_glob,
        "strip_suffix": list(strip_suffix),
        "label_map": label_map,
        "pred_kind": pred_kind,
        "missing": missing,
        "num_classes": int(num_classes),
        "spacing": list(ctx.spacing) if ctx.spacing else None,
    }
    name = dataset_name or Path(gt_dir).resolve().name
    info = {"test_source": "folder", "skipped": {}}
    plan = EvaluationPlan(name, {}, method, None, ctx, tasks, problems, source, info)
    plan.truth_ids = sorted(gts)
    return plan


def _parse_kwargs(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EvaluationError(f"--dataset-arg: {item!r} is not KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def plan_dataset(
    pred_dir: Path | None,
    dataset: str,
    *,
    method: str | None = None,
    root: str | None = None,
    dataset_kwargs: dict[str, Any] | None = None,
    split: str = "test",
    rater: str | None = None,
    pred_glob: str = "*",
    strip_suffix: Sequence[str] = (),
    label_map: dict[int, int] | None = None,
    pred_kind: str = "auto",
    missing: str = "report",
    settings: EvalSettings = EvalSettings(),
    workers: int = 1,
) -> EvaluationPlan:
    """Plan ``--pred DIR --dataset NAME`` (or ``--dataset NAME --rater OTHER``: the human baseline).

    The DataModule (``dataset_kwargs`` plus ``root``) gives the case ids of ``split`` (its bad
    cases left out, as for a trained model), the labels, field of view, spacing and C.
    """
    from datamodules import create_datamodule, dataset_entry

    _check_common(missing, pred_kind, workers)
    dataset_entry(dataset)  # unknown name: KeyError listing the datasets
    kwargs = dict(dataset_kwargs or {})
    build = {**kwargs, **({"root": root} if root else {})}
    dm = create_datamodule(dataset, **build)
    source: dict[str, Any] = {"kind": "dataset", "root": str(dm.root) if dm.root else None}
    preds: dict[str, Path] = {}
    if rater is not None:  # checked before the (slow) setup
        source.update(_check_rater(dm, dataset, rater, pred_dir))
        method = f"second annotator ({rater})"
    else:
        if pred_dir is None:
            raise EvaluationError("--dataset needs --pred DIR (or --rater NAME for the human baseline)")
        preds = collect_cases(pred_dir, pred_glob, strip_suffix, "--pred")
        source.update(
            {
                "pred_dir": str(Path(pred_dir).resolve()),
                "pred_glob": pred_glob,
                "strip_suffix": list(strip_suffix),
                "label_map": label_map,
                "pred_kind": pred_kind,
                "missing": missing,
            }
        )
    if not method:
        raise EvaluationError("--name METHOD is required (the row label on the leaderboard)")
    dm.setup("test")
    if split not in dm.splits:
        raise EvaluationError(f"--split {split!r}: {dataset} has splits {sorted(dm.splits)}")
    with warnings.catch_warnings(record=True):  # its bad cases are listed in split_info()["skipped"]
        warnings.simplefilter("always")
        good = dm.good_case_ids(split)
    truth = {cid: (None, f"{dataset}:{cid}") for cid in good}
    if rater is not None:
        tasks, problems = [CaseTask(cid) for cid in sorted(truth)], []
    else:
        tasks, problems = _match(preds, truth, missing, Path(pred_dir))  # type: ignore[arg-type]
    ctx = WorkerContext(settings, int(dm.num_classes), pred_kind, label_map, None, (dataset, build), rater)
    info = dm.split_info() if hasattr(dm, "split_info") else {"skipped": dict(dm.skipped)}
    baseline = "human" if rater is not None else None
    plan = EvaluationPlan(dataset, kwargs, method, split, ctx, tasks, problems, source, info, baseline, dm)
    plan.truth_ids = sorted(truth)
    return plan


def _check_rater(dm: Any, dataset: str, rater: str, pred_dir: Path | None) -> dict[str, Any]:
    """Validate ``--rater`` against the DataModule's raters; returns the source fields."""
    if pred_dir is not None:
        raise EvaluationError("--rater scores the dataset's other annotator: do not pass --pred")
    names = list(dm.rater_names()) if hasattr(dm, "rater_names") else list(getattr(dm, "annotators", ()))
    reference = dm.annotator or (names[0] if names else None)
    if rater not in names:
        raise EvaluationError(f"--rater {rater!r}: {dataset} has raters {names}")
    if reference == "consensus":
        raise EvaluationError(
            f"--rater {rater!r}: the reference label is the annotators' consensus, which includes the rater; "
            "pick one annotator with --dataset-arg annotator=NAME"
        )
    if rater == reference:
        raise EvaluationError(f"--rater {rater!r} is the reference annotator itself; name another one")
    return {"rater": rater, "reference": reference}


# ---- executing a plan: the record --------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "method"


def _sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class EvaluationOutcome:
    """What :func:`execute` did: the record, where it is, and whether it existed already."""

    record: dict[str, Any]
    path: Path
    existed: bool = False


def execute(
    plan: EvaluationPlan,
    results: Path,
    *,
    workers: int = 1,
    progress: bool = False,
    force: bool = False,
    save_predictions: int = 0,
) -> EvaluationOutcome:
    """Evaluate every task of ``plan`` and write its ``evaluation`` record under ``results``.

    ``save_predictions``: write the prediction of the first N cases (by case id; -1: all) as
    ``<results>/predictions/<run_id>/<case_id>.npz`` (listed in the record's ``predictions``),
    as the runner does, so plots can show the method; it does not change the record's id.

    The run id is ``eval__<dataset>__<method-slug>__<hash of the config and the input files'
    SHA-256>``; a done record with that id is kept (returned with ``existed=True``) unless
    ``force``, which moves it to ``<results>/.superseded/`` first.

    Raises:
        EvaluationError: no case could be evaluated (the first problems are named).
    """
    results = Path(results)
    if save_predictions < -1:
        raise EvaluationError(f"--save-predictions must be -1 (all) or >= 0, got {save_predictions}")
    files: dict[str, dict[str, Any]] = {}
    for t in plan.tasks:
        entry = files.setdefault(t.case_id, {})
        if t.pred:
            entry.update(pred=Path(t.pred).name, pred_sha256=sha256_of(t.pred))
        if t.gt:
            entry.update(gt=Path(t.gt).name, gt_sha256=sha256_of(t.gt))
    config = {
        "dataset": {"name": plan.dataset, "kwargs": plan.dataset_kwargs},
        "method": plan.method,
        "eval": asdict(plan.context.settings),
        "split": plan.split,
    }
    config_hash = _sha(config)
    source = {**plan.source, "files": files}
    inputs = {"config": config, "source": {k: v for k, v in source.items() if not k.endswith("_dir")}}
    inputs["cases"] = [(t.case_id, t.empty) for t in plan.tasks]
    run_id = f"eval__{_slug(plan.dataset)}__{_slug(plan.method)}__{_sha(inputs)}"
    path = record_path(results, run_id)
    old = read_record(path)
    if old is not None and old.get("status") == "done" and not force:
        return EvaluationOutcome(old, path, existed=True)
    if old is not None:
        stamp = str(old.get("finished_at", "unknown")).replace(":", "")
        dest = results / ".superseded" / f"{run_id}__{stamp}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        path.replace(dest)
    started, start = now(), time.perf_counter()
    order = sorted(t.case_id for t in plan.tasks)
    keep = order if save_predictions < 0 else order[:save_predictions]
    saved = {cid: f"predictions/{run_id}/{cid}.npz" for cid in keep}
    tasks = [
        replace(t, save=str(results / saved[t.case_id])) if t.case_id in saved else t for t in plan.tasks
    ]
    _PARENT["dm"] = plan.datamodule
    try:
        out = _map_cases(_run_task, tasks, plan.context, workers, progress, f"evaluate {plan.method}")
    finally:
        _PARENT.clear()
    problems = list(plan.problems) + [r.problem for r in out if r.problem]
    rows = sorted((r.row for r in out if r.row is not None), key=lambda r: r["case_id"])
    if not rows:
        shown = "; ".join(f"{p['file']}: {p['problem']}" for p in problems[:3]) or "no cases"
        raise EvaluationError(f"no case could be evaluated ({len(problems)} problem(s)): {shown}")
    for r in out:
        if r.kind:
            files.setdefault(r.case_id, {})["kind"] = r.kind
    scored = {r["case_id"] for r in rows}
    skipped = {**plan.split_info.get("skipped", {})}
    left_out = set(plan.truth_ids) - scored
    skipped.update({p["case_id"]: p["problem"] for p in problems if p["case_id"] in left_out})
    record = new_record(
        "evaluation",
        run_id,
        config_hash=config_hash,
        status="done",
        config={**config, "source": source},
        method=plan.method,
        **({"baseline": plan.baseline} if plan.baseline else {}),
        cases=rows,
        aggregates=reduce_cases(rows),
        split={**plan.split_info, "skipped": skipped},
        problems=problems,
        **({"predictions": {c: saved[c] for c in sorted(saved) if c in scored}} if saved else {}),
        test_seconds=time.perf_counter() - start,
        device={**device_info("cpu"), "workers": workers},
        started_at=started,
    )
    record["finished_at"] = now()
    write_json_atomic(path, record)
    return EvaluationOutcome(record, path)


# ---- command line ------------------------------------------------------------------------


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not comma-separated numbers (e.g. 0.5,0.5,2)"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segbench evaluate`` (docs/evaluate.md)."""
    src = parser.add_argument_group("what to evaluate")
    src.add_argument("--pred", type=Path, default=None, help="folder of predictions (masks or probabilities)")
    src.add_argument("--gt", type=Path, default=None, help="folder of ground-truth label maps")
    src.add_argument("--dataset", default=None, help="take the ground truth from this DataModule")
    src.add_argument("--rater", default=None, help="with --dataset: score this annotator (human baseline)")
    src.add_argument("--name", default=None, help="method name: the row label on the leaderboard")
    src.add_argument("--root", default=None, help="with --dataset: the dataset's folder")
    src.add_argument("--split", default="test", help="with --dataset: the split to score (default: test)")
    src.add_argument(
        "--dataset-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="DataModule argument (repeatable)",
    )
    src.add_argument("--dataset-name", default=None, help="with --gt: table name (default: the folder name)")
    files = parser.add_argument_group("files and labels")
    files.add_argument("--pred-glob", default="*", help="which files of --pred are predictions (default: *)")
    files.add_argument("--gt-glob", default="*", help="which files of --gt are ground truth (default: *)")
    files.add_argument(
        "--strip-suffix", action="append", default=[], metavar="SUFFIX", help="drop from stems, e.g. _0000"
    )
    files.add_argument("--label-map", default=None, help="renumber predicted labels, e.g. 255:1,128:2")
    files.add_argument(
        "--pred-kind", choices=PRED_KINDS, default="auto", help="label or prob (default: auto)"
    )
    files.add_argument(
        "--missing", choices=MISSING_POLICIES, default="report", help="ground truth without prediction"
    )
    files.add_argument(
        "--num-classes", type=int, default=None, help="with --gt: C (default: from the labels)"
    )
    files.add_argument(
        "--spacing", type=_floats, default=None, help="with --gt: spacing of header-less files"
    )
    ev = parser.add_argument_group("metrics and execution")
    ev.add_argument("--betti-patch", type=int, default=None, help="patch size of the patch-wise Betti errors")
    ev.add_argument("--nsd-tolerance", type=float, default=1.0, help="NSD tolerance in spacing units")
    ev.add_argument("--results", default="results", help="folder of records (default: results)")
    ev.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes")
    ev.add_argument("--force", action="store_true", help="re-evaluate when the same record exists")
    ev.add_argument(
        "--save-predictions", type=int, default=0, metavar="N", help="save N cases' predictions (-1: all)"
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")


def plan_from_args(args: argparse.Namespace) -> EvaluationPlan:
    """The plan that the command-line options describe."""
    settings = EvalSettings(args.betti_patch, args.nsd_tolerance)
    common = {
        "strip_suffix": args.strip_suffix,
        "label_map": parse_label_map(args.label_map),
        "pred_kind": args.pred_kind,
        "missing": args.missing,
        "settings": settings,
        "workers": args.workers,
        "pred_glob": args.pred_glob,
    }
    if args.dataset is not None:
        if args.gt is not None:
            raise EvaluationError("pass either --gt DIR or --dataset NAME, not both")
        return plan_dataset(
            args.pred,
            args.dataset,
            method=args.name,
            root=args.root,
            dataset_kwargs=_parse_kwargs(args.dataset_arg),
            split=args.split,
            rater=args.rater,
            **common,
        )
    if args.pred is None or args.gt is None:
        raise EvaluationError("give --pred DIR with --gt DIR or --dataset NAME (or --dataset NAME --rater R)")
    if args.rater is not None:
        raise EvaluationError("--rater needs --dataset NAME (the DataModule keeps every annotator)")
    if not args.name:
        raise EvaluationError("--name METHOD is required (the row label on the leaderboard)")
    return plan_folders(
        args.pred,
        args.gt,
        method=args.name,
        gt_glob=args.gt_glob,
        num_classes=args.num_classes,
        spacing=args.spacing,
        dataset_name=args.dataset_name,
        progress=not args.quiet,
        **common,
    )


def _fmt(x: float) -> str:
    return f"{x:.4f}" if np.isfinite(x) else str(x)


def _named(problem: dict[str, str]) -> str:
    text = problem["problem"]
    return text if text.startswith(problem["file"]) else f"{problem['file']}: {text}"


def summary(record: dict[str, Any]) -> str:
    """Mean / std / median / counts of each metric (the record's aggregates) and the problems."""
    lines = [f"{record['method']} on {record['config']['dataset']['name']}: {len(record['cases'])} case(s)"]
    aggs = {k: v for k, v in record["aggregates"].items() if not re.search(r"_[0-9]+$", k)}
    width = max((len(k) for k in aggs), default=6)
    lines.append(
        f"{'metric':<{width}}  {'mean':>8}  {'std':>8}  {'median':>8}  {'n':>4}  {'nan':>4}  {'inf':>4}"
    )
    for k, a in aggs.items():
        stats = "  ".join(f"{_fmt(a[s]):>8}" for s in ("mean", "std", "median"))
        lines.append(f"{k:<{width}}  {stats}  {a['n']:>4}  {a['n_nan']:>4}  {a['n_inf']:>4}")
    problems = record.get("problems", [])
    if problems:
        lines.append(f"{len(problems)} problem(s):")
        lines += [f"  {_named(p)}" for p in problems]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    """``segbench evaluate``: 0 = every case matched, 1 = a record with problems, ValueError = user error."""
    plan = plan_from_args(args)
    outcome = execute(
        plan,
        Path(args.results),
        workers=args.workers,
        progress=not args.quiet,
        force=args.force,
        save_predictions=args.save_predictions,
    )
    print(summary(outcome.record))
    if outcome.existed:
        print(f"already evaluated: {outcome.path} (--force re-evaluates)")
    else:
        print(f"record written to {outcome.path}")
    return 1 if outcome.record.get("problems") else 0
