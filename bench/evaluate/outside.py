"""``segbench evaluate``: score a folder of predictions made elsewhere, or a second annotator,
with segbench's own metrics, as one ``evaluation`` record that the leaderboard shows as a row.

The command line lives here; the work is in three modules (docs/evaluate.md):
:mod:`bench.evaluate.plan` matches predictions to ground truth (two folders, a DataModule's
split, or a second annotator), :mod:`bench.evaluate.cases` reads, checks and scores each case in
``--workers`` processes, and :mod:`bench.evaluate.score` writes the record. Mismatches are never
skipped silently: predictions without ground truth, ground truth without prediction, unreadable
files, shape or spacing differences and unexpected label values are each listed by file in the
record's ``problems`` and on stdout.

``--run RUN --dataset OTHER`` (:func:`predict_run`) predicts with a run's kept model first; a
sweep's ``eval.external`` goes through the same path for every trained run
(:func:`evaluate_externals`, wired into the runner by :func:`external_evaluator`; docs/external.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.evaluate.cases import EvalSettings
from bench.evaluate.clicks import evaluate_clicks
from bench.evaluate.interpret import PRED_KINDS, parse_label_map
from bench.evaluate.plan import MISSING_POLICIES, EvaluationError, EvaluationPlan, plan_dataset, plan_folders
from bench.evaluate.score import EvaluationOutcome, execute
from bench.records import Record, claim, digest, load_record, read_record, record_path, supersede
from bench.records.identity import slug
from bench.records.store import DEFAULT_RESULTS

if typing.TYPE_CHECKING:
    from bench.config import ComponentSpec, RunConfig

__all__ = [
    "EXTERNAL_INHERITED",
    "add_arguments",
    "evaluate_args",
    "evaluate_externals",
    "external_evaluator",
    "main",
    "plan_from_args",
    "run_evaluation",
    "summary",
]


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
    src.add_argument(
        "--constant",
        default=None,
        metavar="WHAT",
        help="with --dataset: score one label everywhere: background, foreground or LABEL (a baseline)",
    )
    src.add_argument("--name", default=None, help="method name: the row label on the leaderboard")
    src.add_argument(
        "--run",
        default=None,
        metavar="RUN",
        help="with --dataset: predict with this run's kept model (id, record or exported folder) and score "
        "it, in one step (docs/predict.md)",
    )
    src.add_argument("--root", default=None, help="with --dataset: the dataset's folder")
    src.add_argument(
        "--split", default="test", help="with --dataset: the split to score (default: test; all: every case)"
    )
    src.add_argument(
        "--dataset-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="DataModule argument (repeatable)",
    )
    src.add_argument("--dataset-name", default=None, help="with --gt: table name (default: the folder name)")
    src.add_argument(
        "--clicks",
        action="store_true",
        help="interactive method: --pred holds <case_id>/click_01.<ext> ... per case; scored as NoC and "
        "Dice after k clicks (docs/evaluate.md)",
    )
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
    files.add_argument(
        "--reorient",
        action="store_true",
        help="flip / transpose a NIfTI prediction stored in another orientation onto the ground truth's "
        "(default: such a prediction is an error naming the file)",
    )
    ev = parser.add_argument_group("metrics and execution")
    ev.add_argument("--betti-patch", type=int, default=None, help="patch size of the patch-wise Betti errors")
    ev.add_argument("--nsd-tolerance", type=float, default=1.0, help="NSD tolerance in spacing units")
    ev.add_argument("--results", default=DEFAULT_RESULTS, help="folder of records (default: %(default)s/)")
    ev.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes")
    ev.add_argument("--force", action="store_true", help="re-evaluate when the same record exists")
    ev.add_argument(
        "--save-predictions", type=int, default=0, metavar="N", help="save N cases' predictions (-1: all)"
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")


def _parse_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``--dataset-arg KEY=VALUE`` options as DataModule arguments (values read as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EvaluationError(f"--dataset-arg: {item!r} is not KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def plan_from_args(args: argparse.Namespace) -> EvaluationPlan:
    """The plan that the command-line options describe (``--reorient`` stated in its ``source``)."""
    plan = _plan_from_args(args)
    if getattr(args, "reorient", False):
        plan.context = dataclasses.replace(plan.context, reorient=True)
        plan.source["reorient"] = True
    return plan


def _plan_from_args(args: argparse.Namespace) -> EvaluationPlan:
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
            constant=args.constant,
            **common,
        )
    if args.constant is not None:
        raise EvaluationError("--constant needs --dataset NAME (the DataModule gives every case)")
    if args.pred is None or args.gt is None:
        raise EvaluationError(
            "give --pred DIR with --gt DIR or --dataset NAME (or --dataset NAME --rater R / --constant WHAT)"
        )
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


def summary(record: Record) -> str:
    """Mean / std / median / counts of each metric (the record's aggregates) and the problems."""
    lines = [f"{record.method} on {record.dataset.get('name')}: {len(record.cases)} case(s)"]
    aggs = {k: v for k, v in record.aggregates.items() if not re.search(r"_[0-9]+$", k)}
    width = max((len(k) for k in aggs), default=6)
    lines.append(
        f"{'metric':<{width}}  {'mean':>8}  {'std':>8}  {'median':>8}  {'n':>4}  {'nan':>4}  {'inf':>4}"
    )
    for k, a in aggs.items():
        stats = "  ".join(f"{_fmt(a[s]):>8}" for s in ("mean", "std", "median"))
        lines.append(f"{k:<{width}}  {stats}  {a['n']:>4}  {a['n_nan']:>4}  {a['n_inf']:>4}")
    problems = record.problems
    if problems:
        lines.append(f"{len(problems)} problem(s):")
        lines += [f"  {_named(p)}" for p in problems]
    return "\n".join(lines)


def predict_run(args: argparse.Namespace) -> EvaluationPlan:
    """``--run RUN --dataset OTHER``: the run's kept model predicts ``OTHER``'s split (the predictor
    of ``segbench predict``) into ``<results>/.predicted/<run id>__<dataset>__<digest of the data
    arguments>/``, and the plan scores those label maps; the record names the training run and its
    dataset."""
    from bench.evaluate.predict import find_model, load_model, predict

    if args.dataset is None:
        raise EvaluationError("--run needs --dataset NAME (the data to test the run's model on)")
    for flag in ("pred", "gt", "rater", "constant"):
        if getattr(args, flag) is not None:
            raise EvaluationError(f"--run predicts itself: do not pass --{flag}")
    model = load_model(find_model(args.run, args.results))
    trained = model.config["config"]
    kwargs = _parse_kwargs(args.dataset_arg)
    tag = digest([args.dataset, args.split, args.root, kwargs])
    folder = Path(args.results) / ".predicted" / f"{model.run_id}__{args.dataset}__{tag}"
    shutil.rmtree(folder, ignore_errors=True)  # segbench's own folder: predicted afresh every time
    predict(
        model,
        folder,
        dataset=args.dataset,
        split=args.split,
        root=args.root,
        dataset_kwargs=kwargs,
        progress=not args.quiet,
    )
    if args.dataset == trained["dataset"]["name"]:  # the ground truth of the data it predicted
        own = {**(model.config.get("datamodule") or {}), **kwargs}
        args.dataset_arg = [f"{k}={json.dumps(v)}" for k, v in own.items() if k != "root"]
    args.pred = folder
    args.pred_glob = "*.png" if int(model.data["spatial_dims"]) == 2 else "*.nii.gz"
    if not args.name:
        args.name = (
            f"{trained['model']['name']} / {trained['loss']['name']} "
            f"(trained on {trained['dataset']['name']}, seed {trained.get('seed', 0)})"
        )
    plan = plan_from_args(args)
    plan.source.update(run=model.run_id, trained_on=trained["dataset"]["name"])
    return plan


def run_evaluation(args: argparse.Namespace) -> EvaluationOutcome:
    """Plan (predicting first with ``--run``) and execute what the options of ``segbench evaluate``
    describe; the record is written (or found, unless ``--force``)."""
    if args.clicks:  # an interactive method's per-click label maps (bench/evaluate/clicks.py)
        return evaluate_clicks(args)
    plan = predict_run(args) if args.run is not None else plan_from_args(args)
    return execute(
        plan,
        Path(args.results),
        workers=args.workers,
        progress=not args.quiet,
        force=args.force,
        save_predictions=args.save_predictions,
    )


def evaluate_args(**options: Any) -> argparse.Namespace:
    """The options of ``segbench evaluate`` at their command-line defaults, ``options`` replacing
    some (``run=``, ``dataset=``, ``dataset_arg=`` ...): the command without the command line.

    Raises:
        TypeError: an option ``segbench evaluate`` does not have.
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    args = parser.parse_args([])
    for key, value in options.items():
        if not hasattr(args, key):
            raise TypeError(f"segbench evaluate has no option {key!r}")
        setattr(args, key, value)
    return args


# ---- a sweep's eval.external ------------------------------------------------------------------

EXTERNAL_INHERITED = ("scale", "split_seed")
"""DataModule arguments an ``eval.external`` entry takes from the trained run's dataset unless it
sets its own: the resampling the model was trained at, and the split seed, so that an external
dataset's test split is the one its own runs in the sweep are tested on."""
_NOT_DATA = ("root", "files_digest")  # where the files lie, not which cases: never passed as --dataset-arg


def external_kwargs(trained: Mapping[str, Any], entry: ComponentSpec) -> dict[str, Any]:
    """The DataModule arguments of ``entry`` (``root`` included) for a run whose resolved config is
    ``trained`` (``RunConfig.to_dict()`` form): the :data:`EXTERNAL_INHERITED` ones of the trained
    dataset (its entry first, then the sweep's ``data``), the entry's own winning."""
    own = dict(trained["dataset"].get("kwargs") or {})
    data = dict(trained.get("data") or {})
    inherited = {k: own[k] if k in own else data.get(k) for k in EXTERNAL_INHERITED}
    return {**{k: v for k, v in inherited.items() if v is not None}, **entry.kwargs}


def _recorded(
    results: Path, run_id: str, dataset: str, kwargs: Mapping[str, Any], ev: Mapping[str, Any]
) -> list[Path]:
    """The evaluation records of ``results`` that test run ``run_id`` on ``dataset``'s test split with
    these DataModule arguments (no ``root``) and metric settings."""
    found = []
    for path in sorted(Path(results).glob(f"eval__{slug(dataset)}__*.json")):
        d = read_record(path) or {}
        cfg = d.get("config") or {}
        if (
            (cfg.get("source") or {}).get("run") == run_id
            and cfg.get("dataset") == {"name": dataset, "kwargs": dict(kwargs)}
            and cfg.get("split") == "test"
            and all((cfg.get("eval") or {}).get(k) == v for k, v in ev.items())
        ):
            found.append(path)
    return found


def evaluate_externals(
    cfg: RunConfig, results: Path, *, fresh: bool = False, workers: int = 1, progress: bool = False
) -> list[EvaluationOutcome]:
    """Test the done run ``cfg`` on each of its ``eval.external`` datasets' test split, as
    ``segbench evaluate --run <run id> --dataset <entry> [--root ...] [--dataset-arg ...]`` does
    (:func:`predict_run`, :func:`run_evaluation`), with the run's ``eval.betti_patch`` and
    ``eval.nsd_tolerance``.

    An external test already recorded is kept (returned with ``existed=True``) unless ``fresh`` (the
    run was trained now, e.g. ``--force``): its old external records are then superseded and the
    test is made again. Entries naming the run's own dataset are skipped; a test another worker
    holds (a claim) is left to it. A test that fails is said on stderr in one line and writes no
    record; the others go on (as a failed run does not stop a sweep).
    """
    from bench.errors import UserError

    results = Path(results)
    record = load_record(record_path(results, cfg.run_id))
    if record is None or not record.done or not cfg.eval.external:
        return []
    trained = record.config
    ev = {"betti_patch": cfg.eval.betti_patch, "nsd_tolerance": cfg.eval.nsd_tolerance}
    out = []
    for entry in cfg.eval.external:
        if entry.name == cfg.dataset.name:
            continue
        kwargs = external_kwargs(trained, entry)
        args = {k: v for k, v in kwargs.items() if k not in _NOT_DATA}
        held = claim(results, f"{cfg.run_id}__external__{digest([entry.name, args])}")
        if held is None:
            continue
        with held:
            old = _recorded(results, cfg.run_id, entry.name, args, ev)
            if old and not fresh:
                rec = load_record(old[0])
                if rec is not None and rec.done:
                    out.append(EvaluationOutcome(rec, old[0], existed=True))
                    continue
            for path in old:
                supersede(results, path.stem, "the run was trained again; its external test is made again")
            options = evaluate_args(
                run=cfg.run_id,
                dataset=entry.name,
                root=None if kwargs.get("root") is None else str(kwargs["root"]),
                dataset_arg=[f"{k}={json.dumps(v)}" for k, v in args.items()],
                split="test",
                results=str(results),
                betti_patch=ev["betti_patch"],
                nsd_tolerance=ev["nsd_tolerance"],
                workers=workers,
                quiet=not progress,
            )
            try:
                out.append(run_evaluation(options))
            except Exception as e:  # noqa: BLE001 - as a failed run, a failed test does not stop the sweep
                what = str(e).splitlines()[0] if isinstance(e, UserError | ValueError | OSError) else repr(e)
                print(f"external test of {cfg.run_id} on {entry.name} failed: {what}", file=sys.stderr)
    return out


def external_evaluator(
    results: Path, *, workers: int = 1, progress: bool = False
) -> Callable[[RunConfig, bool], list[EvaluationOutcome]]:
    """The runner's ``after_run`` step for ``eval.external``
    (:func:`bench.run.execute.run_sweep`): ``step(cfg, fresh)`` is :func:`evaluate_externals`."""

    def step(cfg: RunConfig, fresh: bool) -> list[EvaluationOutcome]:
        return evaluate_externals(cfg, results, fresh=fresh, workers=workers, progress=progress)

    return step


def main(args: argparse.Namespace) -> int:
    """``segbench evaluate``: 0 = every case matched, 1 = a record with problems, ValueError = user error."""
    outcome = run_evaluation(args)
    print(summary(outcome.record))
    if outcome.existed:
        print(f"already evaluated: {outcome.path} (--force re-evaluates)")
    else:
        print(f"record written to {outcome.path}")
    return 1 if outcome.record.problems else 0
