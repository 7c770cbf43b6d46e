"""``segbench uncertainty``: uncertainty and out-of-distribution scores of kept models (docs/uncertainty.md).

The runs (``--runs ID ...``, or ``--row DATASET:MODEL[:LOSS[:TAG]]``: the done seeds of one leaderboard
row, grouped as ``segbench ensemble`` groups them) re-predict the test split of their own dataset
with their kept models (:func:`bench.evaluate.predict.load_model`, the test loop's sliding
windows). Per case and member: softmax probabilities ``(C, *S)`` and the logits ``(C, *S)`` of
the plain (unflipped) pass. The ensemble's probabilities are the members' mean, its logits the
members' mean logits. Per case (inside the field of view when the dataset has one):

* ``unc_msp`` = ``1 - max_c p`` and ``unc_entropy`` of the ensemble's mean probabilities;
* ``unc_energy`` = ``-logsumexp`` of the members' mean logits (T = 1);
* ``unc_mi``: mutual information across the members (seed ensemble; two or more runs);
* ``unc_mi_mc`` (``--mc-dropout N``): mutual information across N passes with only the dropout
  modules in train mode, per member, mean over members;
* ``unc_ood``: the network's own per-voxel OOD output where its forward gives one (``"ood"``:
  MaskFormer's RbA, :mod:`models.mask_former`), blended over the same sliding windows, mean over
  the case, mean over members;
* ``dice``: the ensemble argmax's Dice (foreground classes, mean; outside the field of view both
  are background), the risk being ``1 - Dice``.

Over the run's own test cases with a finite Dice: AURC and Spearman of each score with Dice.
``--ood DATASET[:KEY=VALUE,...]``: the same scores on that dataset's test split (its DataModule
arguments inherit the trained run's ``scale`` and ``split_seed`` as ``eval.external`` does), and
the AUROC of each score for own test cases (in) against that dataset's (out). Output: a record
``<results>/uncertainty/<name>.json`` and its tables ``<name>.md``, every sentence generated from
the record.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from bench.errors import UserError
from bench.evaluate.ensemble import group_rows
from bench.evaluate.outside import EXTERNAL_INHERITED
from bench.evaluate.predict import LoadedModel, find_model, load_model, make_datamodule
from bench.metrics import (
    aurc,
    auroc,
    dice,
    energy,
    entropy,
    max_softmax,
    model_ood,
    mutual_information,
    spearman,
)
from bench.records import Record, digest, load_records, now, row_tag, write_json_atomic, write_text_atomic
from bench.records.provenance import package_versions
from bench.records.store import DEFAULT_RESULTS
from models.inference import tta_probabilities

SCORES = ("unc_msp", "unc_entropy", "unc_energy", "unc_mi", "unc_mi_mc", "unc_ood")
"""Per-case score keys, in table order (each higher = more uncertain)."""
SCORE_TEXT = {
    "unc_msp": "1 - max softmax of the ensemble mean",
    "unc_entropy": "entropy of the ensemble mean",
    "unc_energy": "energy (T = 1) of the members' mean logits",
    "unc_mi": "mutual information across the members",
    "unc_mi_mc": "mutual information across MC-dropout passes, mean over members",
    "unc_ood": "the network's own OOD output (MaskFormer: RbA, Nayal et al. 2023), mean over members",
}


class UncertaintyError(UserError):
    """A bad run, row, dataset or option of ``segbench uncertainty`` / ``multirater`` (one line)."""


# ---- the members ------------------------------------------------------------------------------


def select_members(
    results: Path, runs: Sequence[str] | None = None, row: str | None = None
) -> list[LoadedModel]:
    """The kept models of ``runs`` (run ids), or of the done seeds of the row ``row``
    (``DATASET:MODEL[:LOSS[:TAG]]``, the rows of :func:`bench.evaluate.ensemble.group_rows`), loaded.

    Raises:
        UncertaintyError: neither or both given, no row or several rows match, or the runs are of
            different datasets.
        PredictError: a run is unknown, not done, or kept no model (one line naming it).
    """
    if bool(runs) == (row is not None):
        raise UncertaintyError("give --runs ID ... or --row DATASET:MODEL[:LOSS[:TAG]] (one of them)")
    if row is not None:
        runs = [r.run_id for r in row_members(results, row)]
    assert runs is not None
    if len(set(runs)) != len(runs):
        raise UncertaintyError(f"--runs: a run is named twice ({', '.join(runs)})")
    models = [load_model(find_model(run_id, results)) for run_id in runs]
    datasets = {m.run_id: m.config["config"]["dataset"]["name"] for m in models}
    if len(set(datasets.values())) > 1:
        raise UncertaintyError(f"--runs: the runs are of different datasets ({datasets})")
    return models


def row_members(results: Path, row: str) -> list[Record]:
    """The done train records of the leaderboard row ``DATASET:MODEL[:LOSS[:TAG]]`` (``TAG``: the
    row's hash, :func:`bench.records.row_tag`, shown as ``[row TAG]`` where names clash), sorted by seed.

    Raises:
        UncertaintyError: no row, or several (sizes, folds), match; the message lists them.
    """
    parts = row.split(":")
    if len(parts) not in (2, 3, 4) or not all(parts):
        raise UncertaintyError(f"--row {row!r}: give DATASET:MODEL[:LOSS[:ROW TAG]]")
    groups = [
        g
        for g in group_rows(load_records(Path(results))[0])
        if g.dataset == parts[0]
        and g.members[0].model_name == parts[1]
        and (len(parts) < 3 or g.members[0].loss_name == parts[2])
        and (len(parts) < 4 or row_tag(g.key) == parts[3])
    ]
    if not groups:
        raise UncertaintyError(f"--row {row!r}: no done run of that row in {results}")
    if len(groups) > 1:
        labels = "; ".join(
            f"{g.dataset}:{g.members[0].model_name}:{g.members[0].loss_name}:{row_tag(g.key)} "
            f"({g.label}, fold {g.fold}, {len(g.members)} runs)"
            for g in groups
        )
        raise UncertaintyError(f"--row {row!r}: {len(groups)} rows match, give one of: {labels}")
    return list(groups[0].members)


def dropout_modules(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The dropout modules of ``net`` that drop something (``nn.Dropout``, ``Dropout2d``, ``Dropout3d``,
    ``AlphaDropout`` ... with ``p > 0``; a ``p = 0`` placeholder is no dropout)."""
    return [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0]


def check_mc_dropout(models: Sequence[LoadedModel], n: int) -> None:
    """``--mc-dropout N`` needs N >= 2 and dropout layers in every member.

    Raises:
        UncertaintyError: naming the first run whose network has no dropout module.
    """
    if n < 2:
        raise UncertaintyError(f"--mc-dropout: needs at least 2 passes, got {n}")
    for m in models:
        if not dropout_modules(m.module.net):
            name = m.config["config"]["model"]["name"]
            raise UncertaintyError(
                f"run {m.run_id}: --mc-dropout needs dropout layers; its network ({name}) has none"
            )


def member_outputs(model: LoadedModel, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(prob, logits)`` of one prepared case ``image (in_channels, *S)``: the test loop's softmax
    probabilities (with the run's ``eval.tta``) and the logits of the plain pass, both
    ``(C, *S)`` float32."""
    module = model.module
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    x = x.to(next(module.parameters()).device)
    seen: list[torch.Tensor] = []

    def predict(t: torch.Tensor) -> torch.Tensor:
        z = module.predict_logits(t)
        if not seen:
            seen.append(z)
        return z

    with torch.inference_mode():
        prob = tta_probabilities(predict, x, module.tta)
    return prob[0].float().cpu().numpy(), seen[0][0].float().cpu().numpy()


def member_ood(model: LoadedModel, image: np.ndarray) -> np.ndarray | None:
    """The network's own per-voxel OOD map ``(*S)`` float32 of one prepared case ``image
    (in_channels, *S)`` (MaskFormer's RbA; higher = more anomalous), plain pass, sliding windows as
    the test loop; ``None`` for a network without an ``"ood"`` output."""
    module = model.module
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    with torch.inference_mode():
        ood = module.predict_output(x.to(next(module.parameters()).device), "ood")
    return None if ood is None else ood[0].float().cpu().numpy()


def mc_samples(model: LoadedModel, image: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``(n, C, *S)`` softmax probabilities of ``n`` passes with only the dropout modules in train
    mode (no TTA), the generator seeded with ``seed``; the module is back in eval mode after."""
    module = model.module
    drops = dropout_modules(module.net)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    x = x.to(next(module.parameters()).device)
    torch.manual_seed(seed)
    try:
        for m in drops:
            m.train()
        with torch.inference_mode():
            out = [torch.softmax(module.predict_logits(x).float(), 1)[0].cpu().numpy() for _ in range(n)]
    finally:
        module.eval()
    return np.stack(out)


# ---- the data ---------------------------------------------------------------------------------


def parse_dataset(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:KEY=VALUE,...]`` (values read as YAML) -> ``(name, kwargs)``.

    Raises:
        UncertaintyError: an item that is not ``KEY=VALUE``.
    """
    name, _, rest = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UncertaintyError(f"--ood {spec!r}: {item!r} is not KEY=VALUE")
        kwargs[key] = yaml.safe_load(value)
    if not name:
        raise UncertaintyError(f"--ood {spec!r}: no dataset name")
    return name, kwargs


def ood_kwargs(model: LoadedModel, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The DataModule arguments of an OOD dataset: the trained run's ``scale`` and ``split_seed``
    (:data:`bench.evaluate.outside.EXTERNAL_INHERITED`, as ``eval.external``), ``kwargs`` winning."""
    trained = model.config["config"]
    own = dict(trained["dataset"].get("kwargs") or {})
    data = dict(trained.get("data") or {})
    inherited = {k: own[k] if k in own else data.get(k) for k in EXTERNAL_INHERITED}
    return {**{k: v for k, v in inherited.items() if v is not None}, **kwargs}


@dataclass
class TestCases:
    """A DataModule's test cases: its name, the arguments it was built with, the set-up DataModule."""

    name: str
    kwargs: dict[str, Any]
    dm: Any
    case_ids: list[str]
    label: str = ""


def load_test_cases(
    model: LoadedModel, dataset: str | None = None, kwargs: dict[str, Any] | None = None
) -> TestCases:
    """The run's own test split (``dataset`` None) or ``dataset``'s, set up.

    Raises:
        UncertaintyError: the dataset's dimensions or channels differ from the model's, or it has no
            test case.
    """
    dm = make_datamodule(model, dataset, None, kwargs)
    name = dataset or model.config["config"]["dataset"]["name"]
    data = model.data
    if int(dm.spatial_dims) != int(data["spatial_dims"]) or int(dm.in_channels) != int(data["in_channels"]):
        raise UncertaintyError(
            f"--ood {name}: {dm.spatial_dims}D with {dm.in_channels} channel(s); the model is "
            f"{data['spatial_dims']}D with {data['in_channels']}"
        )
    dm.setup("test")
    with warnings.catch_warnings(record=True):  # bad cases are left out, as for the run
        warnings.simplefilter("always")
        ids = sorted(dm.good_case_ids("test"))
    if not ids:
        raise UncertaintyError(f"{name}: no test case")
    return TestCases(name, dict(kwargs or {}), dm, ids, name)


def foreground_dice(prob: np.ndarray, label: np.ndarray, fov: np.ndarray | None) -> float:
    """Dice of ``argmax prob (C, *S)`` against ``label (*S)``, mean over foreground classes (NaN
    classes left out; NaN when every class is empty in both); outside ``fov`` both are background."""
    pred = prob.argmax(0)
    lab = np.asarray(label, dtype=np.int64)
    if fov is not None:
        pred, lab = np.where(fov, pred, 0), np.where(fov, lab, 0)
    per_class = np.asarray(dice(pred, lab, num_classes=prob.shape[0], include_background=False), float)
    return float(np.nanmean(per_class)) if np.isfinite(per_class).any() else math.nan


def case_scores(
    members: Sequence[LoadedModel], image: np.ndarray, fov: np.ndarray | None, *, mc: int = 0, seed: int = 0
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """The per-case scores of one prepared case (see the module docstring), the ensemble's mean
    probabilities ``(C, *S)`` float64 and the members' probabilities ``(M, C, *S)`` float32."""
    outs = [member_outputs(m, image) for m in members]
    probs = np.stack([p for p, _ in outs])
    mean = probs.astype(np.float64).mean(0)
    logits = np.stack([z for _, z in outs]).astype(np.float64).mean(0)
    scores = {
        "unc_msp": max_softmax(mean, fov=fov),
        "unc_entropy": entropy(mean, fov=fov),
        "unc_energy": energy(logits, fov=fov),
    }
    if len(members) > 1:
        scores["unc_mi"] = mutual_information(probs, fov=fov)
    oods = [member_ood(m, image) for m in members]
    if all(o is not None for o in oods):
        scores["unc_ood"] = float(np.mean([model_ood(o, fov=fov) for o in oods]))
    if mc:
        scores["unc_mi_mc"] = float(
            np.mean([mutual_information(mc_samples(m, image, mc, seed), fov=fov) for m in members])
        )
    return scores, mean, probs


def score_cases(
    members: Sequence[LoadedModel],
    tests: TestCases,
    *,
    mc: int = 0,
    seed: int = 0,
    progress: bool = False,
    keep: Callable[[str, np.ndarray], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per test case of ``tests``: ``case_id``, ``dice`` and the scores. ``keep(case_id,
    member probabilities (M, C, *S))`` is called per case when given."""
    rows = []
    for cid in tqdm(tests.case_ids, desc=f"uncertainty {tests.label}", unit="case", disable=not progress):
        case = tests.dm.case(cid)
        fov = None if case.fov is None else np.asarray(case.fov, bool)
        scores, mean, probs = case_scores(members, np.asarray(case.image), fov, mc=mc, seed=seed)
        rows.append({"case_id": cid, "dice": foreground_dice(mean, case.label, fov), **scores})
        if keep is not None:
            keep(cid, probs)
    return rows


# ---- over cases -------------------------------------------------------------------------------


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def summarise(cases: list[dict[str, Any]], ood: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per score: ``aurc`` (risk ``1 - dice``) and ``spearman`` (with ``dice``) over the own test
    cases with a finite Dice and score, ``auroc[dataset]`` (own cases in, ``dataset``'s out) over
    the cases with a finite score; ``n`` the cases used. None where undefined."""
    out: dict[str, Any] = {}
    for key in SCORES:
        if not cases or key not in cases[0]:
            continue
        both = [(c[key], c["dice"]) for c in cases if math.isfinite(c[key]) and math.isfinite(c["dice"])]
        u = np.array([b[0] for b in both])
        d = np.array([b[1] for b in both])
        entry: dict[str, Any] = {"n": len(both), "aurc": None, "spearman": None, "auroc": {}}
        if both:
            entry["aurc"] = _finite(aurc(u, 1.0 - d))
            entry["spearman"] = _finite(spearman(u, d)) if len(both) > 1 else None
        inside = [c[key] for c in cases if math.isfinite(c[key])]
        for name, rows in ood.items():
            outside = [c[key] for c in rows if math.isfinite(c.get(key, math.nan))]
            entry["auroc"][name] = _finite(auroc(inside, outside)) if inside and outside else None
        out[key] = entry
    return out


# ---- the record and its tables -----------------------------------------------------------------


def record_name(members: Sequence[LoadedModel]) -> str:
    """``<dataset>__<model>__<loss>__<digest of the member run ids>``."""
    cfg = members[0].config["config"]
    ids = sorted(m.run_id for m in members)
    return f"{cfg['dataset']['name']}__{cfg['model']['name']}__{cfg['loss']['name']}__{digest(ids)}"


def member_info(members: Sequence[LoadedModel]) -> list[dict[str, Any]]:
    """Run id, seed, fold and weights' sha256 of each member."""
    return [
        {
            "run_id": m.run_id,
            "seed": m.config["config"].get("seed"),
            "fold": m.config["config"].get("fold", 0),
            "sha256": m.source.sha256,
        }
        for m in members
    ]


def _fmt(x: Any, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def describe_members(record: dict[str, Any]) -> str:
    """One sentence: what was evaluated (from the record's ``inputs``)."""
    inp = record["inputs"]
    ids = [m["run_id"] for m in inp["members"]]
    seeds = ", ".join(str(m["seed"]) for m in inp["members"])
    what = f"a seed ensemble of {len(ids)} runs (seeds {seeds})" if len(ids) > 1 else f"the run {ids[0]}"
    return f"{inp['model']} / {inp['loss']}: {what}, trained on {inp['dataset']['name']}."


def render_markdown(record: dict[str, Any]) -> str:
    """The tables of an ``uncertainty`` record; every number and sentence comes from the record."""
    inp, summary = record["inputs"], record["summary"]
    ood = [o["label"] for o in inp["ood"]]
    n_in = len(record["cases"])
    finite = sum(math.isfinite(c["dice"]) for c in record["cases"])
    lines = [
        f"# Uncertainty: {record['name']}",
        "",
        describe_members(record),
        f"Own test cases: {n_in} of {inp['dataset']['name']} ({finite} with a finite Dice); ensemble Dice "
        f"mean {_fmt(_mean([c['dice'] for c in record['cases']]))}.",
    ]
    for o in inp["ood"]:
        rows = record["ood_cases"][o["label"]]
        lines.append(
            f"OOD: {len(rows)} test cases of {o['name']} (arguments {o['kwargs']}); ensemble Dice mean "
            f"{_fmt(_mean([c['dice'] for c in rows]))}."
        )
    if inp["options"].get("mc_dropout"):
        lines.append(
            f"MC dropout: {inp['options']['mc_dropout']} passes per member, seed {inp['options']['seed']}."
        )
    lines += [
        "",
        "AURC: risk 1 - Dice, cases accepted by increasing score (lower is better). Spearman ρ of the "
        "score with Dice (-1 is best). AUROC: own test cases (in) against the OOD dataset's (out), "
        "higher score = out (1 separates perfectly, 0.5 is chance).",
        "",
        "| " + " | ".join(["score", "AURC", "Spearman ρ with Dice", *(f"AUROC vs {n}" for n in ood)]) + " |",
        "|---|---:|---:|" + "---:|" * len(ood),
    ]
    for key, s in summary.items():
        cells = [key, _fmt(s["aurc"]), _fmt(s["spearman"]), *(_fmt(s["auroc"].get(n)) for n in ood)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Scores: " + "; ".join(f"`{k}` {SCORE_TEXT[k]}" for k in summary) + "."]
    if summary:
        best = min(
            (k for k in summary if summary[k]["aurc"] is not None),
            key=lambda k: summary[k]["aurc"],
            default=None,
        )
        if best is not None:
            lines.append(f"The lowest AURC is {best}'s ({_fmt(summary[best]['aurc'])}).")
        for n in ood:
            vals = {k: s["auroc"].get(n) for k, s in summary.items() if s["auroc"].get(n) is not None}
            if vals:
                top = max(vals, key=lambda k: vals[k])
                lines.append(f"Against {n}, the highest AUROC is {top}'s ({_fmt(vals[top])}).")
    return "\n".join(lines) + "\n"


def _mean(values: Sequence[float]) -> float | None:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else None


def evaluate_uncertainty(
    results: Path,
    members: Sequence[LoadedModel],
    *,
    ood: Sequence[str] = (),
    mc_dropout: int = 0,
    seed: int = 0,
    progress: bool = False,
    keep: Callable[[str, str, np.ndarray], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Score ``members`` on their own test split and each ``ood`` dataset; write the record and its
    tables under ``<results>/uncertainty/``. ``keep(dataset, case_id, probs (M, C, *S))`` sees
    the members' probabilities of every case. Returns the record's path and the record.

    Raises:
        UncertaintyError: a bad ``--ood`` entry or ``--mc-dropout`` on a network without dropout.
    """
    results = Path(results)
    if mc_dropout:
        check_mc_dropout(members, mc_dropout)
    specs = [parse_dataset(s) for s in ood]
    first = members[0]
    started, start = now(), time.perf_counter()
    own = load_test_cases(first)
    sets = [load_test_cases(first, name, ood_kwargs(first, kw)) for name, kw in specs]
    names = [s.name for s in sets]
    for s, spec in zip(sets, ood, strict=True):  # the dataset's name, or the entry when it is ambiguous
        s.label = s.name if names.count(s.name) == 1 and s.name != own.name else spec
    labels = [s.label for s in sets]
    if len(set(labels)) != len(labels):
        raise UncertaintyError(f"--ood: an entry is given twice ({', '.join(ood)})")

    def keeper(name: str) -> Callable[[str, np.ndarray], None] | None:
        return None if keep is None else (lambda cid, p: keep(name, cid, p))

    opts = {"mc": mc_dropout, "seed": seed, "progress": progress}
    cases = score_cases(members, own, keep=keeper(own.name), **opts)
    ood_cases = {s.label: score_cases(members, s, keep=keeper(s.label), **opts) for s in sets}
    cfg = first.config["config"]
    record = {
        "kind": "uncertainty",
        "name": record_name(members),
        "inputs": {
            "results": str(results),
            "members": member_info(members),
            "model": cfg["model"]["name"],
            "loss": cfg["loss"]["name"],
            "dataset": {"name": own.name, "kwargs": dict(first.config.get("datamodule") or {})},
            "ood": [{"label": s.label, "name": s.name, "kwargs": s.kwargs} for s in sets],
            "options": {
                "mc_dropout": mc_dropout,
                "seed": seed,
                "tta": first.module.tta,
                "torch_threads": torch.get_num_threads(),
            },
        },
        "definitions": {
            **SCORE_TEXT,
            "reduction": "mean over the case's voxels inside the field of view (all voxels without one)",
            "dice": "ensemble argmax vs label, mean over foreground classes, background outside the FOV",
            "aurc": "risk 1 - dice over own test cases with a finite Dice (bench.metrics.aurc)",
            "spearman": "Spearman rank correlation of the score with dice (bench.metrics.spearman)",
            "auroc": "P(score_out > score_in), ties 1/2 (bench.metrics.auroc)",
        },
        "cases": cases,
        "ood_cases": ood_cases,
        "summary": summarise(cases, ood_cases),
        "versions": package_versions(),
        "started_at": started,
        "finished_at": now(),
        "seconds": time.perf_counter() - start,
    }
    return write_protocol_record(results, record, render_markdown(record)), record


def write_protocol_record(results: Path, record: dict[str, Any], page: str) -> Path:
    """Write a protocol record (``uncertainty``, ``multirater``) as
    ``<results>/<kind>/<name>.json`` and its generated Markdown ``page`` beside it (both atomically,
    the leaderboard links the page: :mod:`bench.leaderboard.protocols`); returns the JSON's path."""
    folder = Path(results) / str(record["kind"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['name']}.json"
    write_json_atomic(path, record)
    write_text_atomic(path.with_suffix(".md"), page)
    return path


def use_threads() -> int:
    """``$SEGBENCH_THREADS`` (when set) as torch's intra-op threads, as the runner does; the number used."""
    value = os.environ.get("SEGBENCH_THREADS")
    if value:
        try:
            torch.set_num_threads(max(1, int(value)))
        except ValueError:
            raise UncertaintyError(f"$SEGBENCH_THREADS={value!r}: not a whole number") from None
    return torch.get_num_threads()


# ---- the command ------------------------------------------------------------------------------


def add_member_arguments(parser: argparse.ArgumentParser) -> None:
    """``--results``, ``--runs`` / ``--row`` and ``--quiet`` (shared with ``multirater``)."""
    parser.add_argument(
        "--results", default=DEFAULT_RESULTS, help="folder of records (default: %(default)s/)"
    )
    parser.add_argument("--runs", nargs="+", default=None, metavar="ID", help="run ids with kept models")
    parser.add_argument(
        "--row",
        default=None,
        metavar="DATASET:MODEL[:LOSS[:TAG]]",
        help="every done seed of this leaderboard row",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segbench uncertainty``."""
    add_member_arguments(parser)
    parser.add_argument(
        "--ood",
        action="append",
        default=[],
        metavar="DATASET[:KEY=VALUE,...]",
        help="an out-of-distribution test split (repeatable), e.g. hrf:root=data/HRF,scale=0.25",
    )
    parser.add_argument(
        "--mc-dropout", type=int, default=0, metavar="N", help="also MI across N MC-dropout passes per member"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the MC-dropout passes (default: 0)")


def main(args: argparse.Namespace) -> int:
    """``segbench uncertainty``: write the record and tables, print the table."""
    results = Path(args.results)
    if not results.is_dir():
        raise UncertaintyError(f"--results {results}: no such folder")
    use_threads()
    members = select_members(results, args.runs, args.row)
    path, record = evaluate_uncertainty(
        results, members, ood=args.ood, mc_dropout=args.mc_dropout, seed=args.seed, progress=not args.quiet
    )
    print(render_markdown(record))
    print(f"written {path} and {path.with_suffix('.md')}")
    return 0
