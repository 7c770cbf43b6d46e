"""Planning ``segbench evaluate``: which prediction belongs to which ground truth.

Three sources of ground truth (docs/evaluate.md):

- ``--pred DIR --gt DIR`` (:func:`plan_folders`): two folders matched by case id (file stem
  minus ``--strip-suffix``);
- ``--pred DIR --dataset NAME`` (:func:`plan_dataset`): the DataModule's cases of ``--split``
  (default ``test``) with their field of view, spacing and classes, so a prediction is scored
  exactly as a trained model on that split;
- ``--dataset NAME --rater OTHER``: the human baseline, the other annotator's label of every
  case scored against the dataset's default label (record ``baseline: "human"``);
- ``--dataset NAME --constant background|foreground|LABEL``: the trivial predictor, one label
  everywhere, scored against every case (record ``baseline: "constant"``, method ``all
  foreground`` ...), the reference that finds collapsed runs among older records
  (:mod:`bench.leaderboard.degenerate`).

``--split all`` scores every case of the dataset (train, val and test), so that the cases of any
seed's held-out test set are among them.

Mismatches are never skipped silently: predictions without ground truth and ground truth without
prediction (``--missing report`` leaves the case out, ``--missing empty`` scores an
all-background prediction) become problems of the plan, listed by file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.evaluate.cases import CaseTask, EvalSettings, WorkerContext, map_cases, max_label
from bench.evaluate.interpret import PRED_KINDS
from datamodules.readers import CaseLoadError, split_extension

MISSING_POLICIES = ("report", "empty")
CONSTANT_NAMES = {"background": 0, "foreground": 1}
ALL_SPLITS = "all"
DEFAULT_SETTINGS = EvalSettings()


class EvaluationError(ValueError):
    """A user mistake in ``segbench evaluate`` (bad folder, option or ambiguous files)."""


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


def case_id_of(path: str | os.PathLike[str], strip_suffixes: Sequence[str] = ()) -> str | None:
    """The case id of a file: its name minus the extension (``.nii.gz`` is one) and minus the
    first of ``strip_suffixes`` that the stem ends with; None for an unsupported extension."""
    parts = split_extension(Path(path).name)
    if parts is None:
        return None
    stem = parts[0]
    for suffix in strip_suffixes:
        if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


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
    settings: EvalSettings = DEFAULT_SETTINGS,
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
            labels = map_cases(max_label, [str(p) for p in gts.values()], ctx0, workers, progress, "classes")
        except CaseLoadError as e:
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


def plan_dataset(
    pred_dir: Path | None,
    dataset: str,
    *,
    method: str | None = None,
    root: str | None = None,
    dataset_kwargs: dict[str, Any] | None = None,
    split: str = "test",
    rater: str | None = None,
    constant: str | None = None,
    pred_glob: str = "*",
    strip_suffix: Sequence[str] = (),
    label_map: dict[int, int] | None = None,
    pred_kind: str = "auto",
    missing: str = "report",
    settings: EvalSettings = DEFAULT_SETTINGS,
    workers: int = 1,
) -> EvaluationPlan:
    """Plan ``--pred DIR --dataset NAME`` (or ``--dataset NAME --rater OTHER``: the human baseline;
    or ``--dataset NAME --constant WHAT``: one label everywhere, the constant baseline).

    The DataModule (``dataset_kwargs`` plus ``root``) gives the case ids of ``split`` (its bad
    cases left out, as for a trained model; ``all``: every split), the labels, field of view,
    spacing and C.
    """
    from datamodules import create_datamodule, dataset_entry

    _check_common(missing, pred_kind, workers)
    dataset_entry(dataset)  # unknown name: KeyError listing the datasets
    kwargs = dict(dataset_kwargs or {})
    build = {**kwargs, **({"root": root} if root else {})}
    dm = create_datamodule(dataset, **build)
    source: dict[str, Any] = {"kind": "dataset", "root": str(dm.root) if dm.root else None}
    preds: dict[str, Path] = {}
    label: int | None = None
    if rater is not None and constant is not None:
        raise EvaluationError("pass either --rater NAME or --constant WHAT, not both")
    if rater is not None:  # checked before the (slow) setup
        source.update(_check_rater(dm, dataset, rater, pred_dir))
        method = f"second annotator ({rater})"
    elif constant is not None:
        if pred_dir is not None:
            raise EvaluationError("--constant scores one label everywhere: do not pass --pred")
        label = _constant_label(constant, int(dm.num_classes))
        source["constant"] = label
        method = method or _constant_method(label, int(dm.num_classes))
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
    if split not in dm.splits and split != ALL_SPLITS:
        raise EvaluationError(
            f"--split {split!r}: {dataset} has splits {sorted(dm.splits)} (or {ALL_SPLITS!r}: every case)"
        )
    with warnings.catch_warnings(record=True):  # its bad cases are listed in split_info()["skipped"]
        warnings.simplefilter("always")
        names = list(dm.splits) if split == ALL_SPLITS else [split]
        good = sorted({cid for name in names for cid in dm.good_case_ids(name)})
    truth = {cid: (None, f"{dataset}:{cid}") for cid in good}
    if rater is not None:
        tasks, problems = [CaseTask(cid) for cid in sorted(truth)], []
    elif label is not None:
        tasks, problems = [CaseTask(cid, constant=label) for cid in sorted(truth)], []
    else:
        tasks, problems = _match(preds, truth, missing, Path(pred_dir))  # type: ignore[arg-type]
    ctx = WorkerContext(settings, int(dm.num_classes), pred_kind, label_map, None, (dataset, build), rater)
    info = dm.split_info() if hasattr(dm, "split_info") else {"skipped": dict(dm.skipped)}
    baseline = "human" if rater is not None else "constant" if label is not None else None
    plan = EvaluationPlan(dataset, kwargs, method, split, ctx, tasks, problems, source, info, baseline, dm)
    plan.truth_ids = sorted(truth)
    return plan


def _constant_label(constant: str, num_classes: int) -> int:
    """The label of ``--constant``: ``background`` 0, ``foreground`` 1 (a binary task), or a label."""
    if constant in CONSTANT_NAMES:
        label = CONSTANT_NAMES[constant]
        if constant == "foreground" and num_classes != 2:
            raise EvaluationError(
                f"--constant foreground: the dataset has {num_classes} classes; "
                f"name the label (1..{num_classes - 1})"
            )
        return label
    try:
        label = int(constant)
    except ValueError:
        raise EvaluationError(
            f"--constant {constant!r}: give background, foreground or a label (0..{num_classes - 1})"
        ) from None
    if not 0 <= label < num_classes:
        raise EvaluationError(f"--constant {label}: the dataset's labels are 0..{num_classes - 1}")
    return label


def _constant_method(label: int, num_classes: int) -> str:
    """The row label of a constant baseline: ``all background``, ``all foreground`` (label 1 of a
    binary task), ``all class 2``."""
    if label == 0:
        return "all background"
    return "all foreground" if num_classes == 2 else f"all class {label}"


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
