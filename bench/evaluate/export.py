"""``segbench export RUN``: a done run's kept model as a folder to share, with a model card.

The folder holds ``model.safetensors`` (the kept weights, byte for byte), ``config.json``
(everything ``segbench predict`` needs: the resolved config, the DataModule's arguments, the data's
dimensions and classes, the weights' sha256) and ``README.md``, a model card whose Hugging Face
``model-index`` metadata states the record's test results (dataset, split, each metric's mean with
its 95 % interval over the test cases) and, when the command line passes it, the run's leaderboard
row (:func:`bench.leaderboard.card.row_of_run`: the mean over every done run of the row, seeds
pooled, with the leaderboard's interval), the training budget, the seeds, the code commit and the
data's licence. ``--onnx`` / ``--torchscript`` add ``model.onnx`` / ``model.torchscript.pt``, each
checked after export against the PyTorch network on a test input (:data:`ATOL`, :data:`RTOL`);
an export that fails or disagrees writes nothing and says why in one line. See ``docs/predict.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from bench.evaluate.predict import LoadedModel, PredictError, find_model, load_model
from bench.records.record import MODEL_CONFIG, WEIGHTS_FILE, Record
from bench.records.store import DEFAULT_RESULTS

ATOL, RTOL = 1e-4, 1e-3
"""An exported graph agrees with PyTorch when ``|exported - torch| <= ATOL + RTOL * |torch|`` for
every logit of the check input (float32 on CPU; reordered sums differ in the last digits)."""
CONFIDENCE = 0.95
ONNX_OPSET = 17
ONNX_EXTRA = "pip install 'segbench[onnx]'"
_PER_CLASS = re.compile(r"_[0-9]+$")


class _Logits(torch.nn.Module):
    """The network with logits as its one output (a dict output gives its ``logits``)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out["logits"] if isinstance(out, dict) else out


def metric_interval(values: list[Any], confidence: float = CONFIDENCE) -> tuple[float, float, float, int]:
    """``(mean, lo, hi, n)``: Student's t interval of the mean over one run's test cases (NaN left
    out; it ignores training noise, one run being one seed). ``±inf`` values give that mean at both ends."""
    from scipy import stats

    v = np.asarray([math.nan if x is None else x for x in values], dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(v.mean())
    if not math.isfinite(m) or v.size < 2:
        return (
            m,
            (m if not math.isfinite(m) else math.nan),
            (m if not math.isfinite(m) else math.nan),
            int(v.size),
        )
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half, int(v.size)


def _number(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def card_metrics(record: Record) -> list[dict[str, Any]]:
    """The ``model-index`` metrics of a record: every metric over classes (per-class keys left
    out), its mean exactly as the record's ``aggregates`` state it and its interval."""
    out = []
    for key, agg in record.aggregates.items():
        if _PER_CLASS.search(key):
            continue
        mean, lo, hi, n = metric_interval([c.get(key) for c in record.cases])
        out.append(
            {
                "type": key,
                "name": f"{key} (mean over {n} test cases)",
                "value": _number(float(agg["mean"])),
                "args": {
                    "ci_low": _number(lo),
                    "ci_high": _number(hi),
                    "confidence": CONFIDENCE,
                    "interval": "Student's t over this run's test cases (training noise not included)",
                    "n": n,
                },
            }
        )
    return out


DESIGN_WORDS: dict[str, str] = {
    "crossed": "t interval with seed and case variance (crossed design)",
    "nested": "t interval over the runs' means (nested design)",
    "units": "t interval over the test cases (one run: training noise not included)",
    "none": "no interval could be formed",
}
"""How the leaderboard's interval of a row was formed (:class:`~bench.leaderboard.intervals.MeanInterval`'s
``design``), in the card's words."""


def row_metrics(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``model-index`` metrics of a leaderboard row (``row``: a
    :class:`~bench.leaderboard.card.RowResult` as a dict): each metric's mean as the leaderboard
    prints it and its interval, over the row's runs."""
    runs = len(row["run_ids"])
    out = []
    for key, m in row["metrics"].items():
        if _PER_CLASS.search(key):
            continue
        out.append(
            {
                "type": key,
                "name": f"{key} (leaderboard row: mean over {runs} run(s), seeds {list(row['seeds'])})",
                "value": _number(float(m["mean"])),
                "args": {
                    "ci_low": _number(float(m["lo"])),
                    "ci_high": _number(float(m["hi"])),
                    "confidence": CONFIDENCE,
                    "interval": DESIGN_WORDS.get(str(m["design"]), str(m["design"])),
                    "n_runs": int(m["n_runs"]),
                    "n_units": int(m["n_units"]),
                },
            }
        )
    return out


def model_card(record: Record, config: dict[str, Any], row: dict[str, Any] | None = None) -> str:
    """``README.md`` of an exported model: ``model-index`` YAML front matter, then the prose.

    ``row``: the run's leaderboard row (:class:`~bench.leaderboard.card.RowResult` as a dict), stated
    as a second result; None leaves it out."""
    from datamodules import dataset_class

    dataset = record.dataset
    name = str(dataset.get("name"))
    try:
        licence = (
            str(dataset_class(name, dataset.get("kwargs") or {}).license) or "not stated by the DataModule"
        )
    except (KeyError, ValueError, OSError):
        licence = "unknown (the dataset is not known to this segbench)"
    split = str(record.split.get("test_source") or "test")
    meta = {
        "library_name": "segbench",
        "license": "other",
        "tags": ["segbench", "image-segmentation", "medical-imaging", record.model_name],
        "datasets": [name],
        "model-index": [
            {
                "name": record.run_id,
                "results": [
                    {
                        "task": {"type": "image-segmentation", "name": "Image Segmentation"},
                        "dataset": {
                            "type": name,
                            "name": name,
                            "split": "test",
                            "args": {"test_source": split},
                        },
                        "metrics": card_metrics(record),
                    }
                ],
            }
        ],
    }
    if row is not None:
        meta["model-index"][0]["results"].append(
            {
                "task": {"type": "image-segmentation", "name": "Image Segmentation"},
                "dataset": {
                    "type": name,
                    "name": name,
                    "split": "test",
                    "args": {"test_source": split, "leaderboard_table": row["table"], "row": row["row"]},
                },
                "metrics": row_metrics(row),
            }
        )
    trainer = record.config.get("trainer") or {}
    budget = (
        f"{record.steps} optimiser steps ({record.epochs} epochs; max_steps {trainer.get('max_steps')}, "
        f"max_epochs {trainer.get('max_epochs')}), {record.train_seconds or 0:.0f} s of training"
    )
    data = config["data"]
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {record.run_id}",
        "",
        f"`{record.model_name}` trained with `{record.loss_name}` on `{name}` by segbench. "
        f"{data['spatial_dims']}D, {data['in_channels']} input channel(s), classes {data['class_names']}.",
        "",
        f"- Training budget: {budget}.",
        f"- Seed: {record.seed}, fold {record.fold}; test cases: {len(record.cases)} ({split} test split).",
        f"- Code commit: {record.commit}{' (uncommitted changes)' if record.dirty else ''}.",
        f"- Data licence: {licence}. The weights were trained on this data; check its terms before reuse.",
        "- Metrics: means over the test cases as the run's record states them, with a 95 % Student's t "
        "interval over those cases (one training run: the spread between seeds is not included).",
        *_row_lines(row),
        "",
        "Use: `segbench predict <this folder> --input images/ --output masks/` (docs/predict.md). "
        f"`{WEIGHTS_FILE}` holds the network's state_dict; `{MODEL_CONFIG}` the resolved config.",
        "",
    ]
    return "\n".join(lines)


def _row_lines(row: dict[str, Any] | None) -> list[str]:
    """The card's sentence on the leaderboard row (generated from the row's numbers)."""
    if row is None:
        return ["- Leaderboard row: not stated (the run's results folder was not analysed)."]
    primary = row.get("primary")
    m = row["metrics"].get(primary) if primary else None
    rank = "unranked" if row.get("rank") is None else f"rank {row['rank']:g}"
    value = (
        f": {primary} {m['mean']:.4g} [{m['lo']:.4g}, {m['hi']:.4g}] "
        f"({DESIGN_WORDS.get(str(m['design']), str(m['design']))})"
        if m
        else ""
    )
    seeds = ", ".join(str(s) for s in row["seeds"])
    return [
        f"- Leaderboard row: `{row['row']}` in table `{row['table']}`, {rank}, "
        f"{len(row['run_ids'])} run(s) (seeds {seeds}){value}."
    ]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _blocking_operator(e: BaseException) -> str:
    """The operator an export error names (``aten::...``), or its first line."""
    found = re.search(r"(aten|prim|onnx)::[A-Za-z0-9_.]+", str(e))
    return f"operator {found.group(0)} ({_first_line(e)})" if found else _first_line(e)


def _check(kind: str, got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference; raises :class:`PredictError` when it exceeds the tolerance."""
    if got.shape != want.shape:
        raise PredictError(f"--{kind}: the exported graph gives shape {got.shape}, PyTorch {want.shape}")
    diff = np.abs(got - want)
    bad = diff > ATOL + RTOL * np.abs(want)
    if bad.any():
        raise PredictError(
            f"--{kind}: the exported graph differs from PyTorch by up to {float(diff.max()):.3g} "
            f"(tolerance {ATOL} + {RTOL} x |value|)"
        )
    return float(diff.max())


def export_onnx(net: torch.nn.Module, x: torch.Tensor, path: Path) -> float:
    """Export ``net`` to ONNX (opset :data:`ONNX_OPSET`, batch axis dynamic) and check it with
    onnxruntime on ``x``; returns the largest difference from PyTorch."""
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError:
        raise PredictError(f"--onnx needs onnx and onnxruntime ({ONNX_EXTRA})") from None
    wrapped = _Logits(net).eval()
    try:
        torch.onnx.export(
            wrapped,
            (x,),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": x.numpy()})[0]
    except Exception as e:  # noqa: BLE001 - every exporter / runtime failure becomes one line
        raise PredictError(f"--onnx: {type(net).__name__} cannot be exported: {_blocking_operator(e)}") from e
    with torch.no_grad():
        want = wrapped(x).numpy()
    return _check("onnx", got, want)


def export_torchscript(net: torch.nn.Module, x: torch.Tensor, path: Path) -> float:
    """Trace ``net`` to TorchScript, save it, load it back and check it on ``x``."""
    wrapped = _Logits(net).eval()
    try:
        with torch.no_grad():
            traced = torch.jit.trace(wrapped, x, check_trace=False)
        torch.jit.save(traced, str(path))
        with torch.no_grad():
            got = torch.jit.load(str(path))(x).numpy()
    except Exception as e:  # noqa: BLE001 - every tracer failure becomes one line
        raise PredictError(
            f"--torchscript: {type(net).__name__} cannot be traced: {_blocking_operator(e)}"
        ) from e
    with torch.no_grad():
        want = wrapped(x).numpy()
    return _check("torchscript", got, want)


def check_input(model: LoadedModel) -> torch.Tensor:
    """The test input of the checks: ``(1, in_channels, *patch)`` standard normal, seed 0."""
    shape = (1, int(model.data["in_channels"]), *model.config["config"]["data"]["patch_size"])
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def export(
    what: str,
    output: Path,
    *,
    results: str | os.PathLike[str] = DEFAULT_RESULTS,
    onnx: bool = False,
    torchscript: bool = False,
    row: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Write the export folder of run ``what`` (a run id of ``results`` or a record file); ``row``:
    its leaderboard row for the card (:func:`model_card`).

    The folder is built beside ``output`` and moved into place when complete, so a failed export
    leaves nothing. Returns the largest difference of each checked graph (``onnx`` / ``torchscript``).

    Raises:
        PredictError: no such run, no or changed weights, ``output`` exists and is not empty, or an
            export that fails or disagrees with PyTorch.
    """
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise PredictError(f"--output {output}: exists and is not an empty folder")
    source = find_model(what, results)
    if source.record is None:
        raise PredictError(f"{what}: give a run (id or record file); {what} is already an exported folder")
    model = load_model(source)
    config = {**model.config, "sha256": source.sha256, "exported_from": str(source.record.run_id)}
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    checked: dict[str, float] = {}
    try:
        shutil.copyfile(source.folder / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        (tmp / MODEL_CONFIG).write_text(json.dumps(config, indent=1) + "\n")
        (tmp / "README.md").write_text(model_card(source.record, config, row))
        net = model.module.net.cpu().eval()
        x = check_input(model)
        if onnx:
            checked["onnx"] = export_onnx(net, x, tmp / "model.onnx")
        if torchscript:
            checked["torchscript"] = export_torchscript(net, x, tmp / "model.torchscript.pt")
        if output.exists():
            output.rmdir()
        tmp.replace(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return checked


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segbench export`` (docs/predict.md)."""
    parser.add_argument("run", help="a done run's id (of --results) or its record file")
    parser.add_argument("--output", type=Path, required=True, help="the folder to write (new or empty)")
    parser.add_argument(
        "--results", default=DEFAULT_RESULTS, help="folder of records (default: %(default)s/)"
    )
    parser.add_argument(
        "--onnx", action="store_true", help=f"also model.onnx, checked with onnxruntime ({ONNX_EXTRA})"
    )
    parser.add_argument("--torchscript", action="store_true", help="also model.torchscript.pt, checked")


def main(args: argparse.Namespace, row: dict[str, Any] | None = None) -> int:
    """``segbench export``: 0 when the folder is written (and every graph agrees); ``row``: the run's
    leaderboard row (the command line analyses the results folder and passes it)."""
    checked = export(
        args.run, args.output, results=args.results, onnx=args.onnx, torchscript=args.torchscript, row=row
    )
    agree = "".join(f"; {k} agrees with PyTorch (max |diff| {v:.2g})" for k, v in checked.items())
    print(f"exported {args.run} to {args.output}{agree}")
    return 0
