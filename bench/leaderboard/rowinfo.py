"""What a row's records state besides the metric values (parameters, time, threads, budget,
seeds, provenance, saved predictions), gathered once so that no renderer reads records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.leaderboard.format import budget, provenance, runs_text
from bench.leaderboard.rows import Row
from models.registry import MODELS


@dataclass(frozen=True)
class Prediction:
    """A saved test-case prediction of one of a row's done runs."""

    case: str
    path: str  # relative to the results folder
    values: dict[str, Any]  # the run's entry for that case (metric values)


@dataclass(frozen=True, kw_only=True)
class RowInfo:
    """What a row's records state besides the metric values, as the outputs show it."""

    params: int | None
    preset: str | None  # the size preset the runs were built at (:func:`preset_name`); None: no model
    train_seconds: float | None  # mean over the done runs that state it
    train_seconds_text: str  # that mean as the tables show it; "(k of n runs)" when some do not state it
    torch_threads: list[int]  # distinct torch thread counts of the done runs (known ones)
    cpu_threads: list[int]  # the same, of the done runs trained on the CPU
    gpus: list[str]  # distinct GPU names of the done runs trained on an accelerator
    budget: str
    seeds: str
    folds: str
    records: list[str]  # run ids, every status
    provenance: str
    saved_probabilities: bool  # a done run saved predictions with probabilities
    predictions: list[Prediction]  # of the done runs, in run-id order
    save_predictions: int | None = None  # eval.save_predictions of the done runs (None: not stated)


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists (a record's JSON holds lists where a registration has tuples)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def preset_name(model: str, kwargs: dict[str, Any]) -> str:
    """Which size preset of ``model``'s registration a record's ``model.kwargs`` built.

    The ``preset`` the kwargs name, else the preset they differ from in the fewest options
    (registration order breaks ties; ``{}`` is the builder's defaults: the ``small`` preset of a
    model registered without ``small``, the ``paper`` one otherwise), followed by ``+ option, ...``
    for the options in which they differ; ``?`` for a model segbench no longer registers.
    """
    if model not in MODELS:
        return "?"
    presets = {n: _plain(dict(o)) for n, o in MODELS.get(model).meta["presets"].items()}
    rest = _plain({k: v for k, v in kwargs.items() if k not in ("preset", "img_size")})
    missing = object()

    def differ(opts: dict[str, Any]) -> list[str]:
        return sorted(k for k in {*opts, *rest} if opts.get(k, missing) != rest.get(k, missing))

    named = kwargs.get("preset")
    if named is not None:  # options the preset does not set are changes beside it
        name, left = (
            str(named),
            sorted(k for k, v in rest.items() if presets.get(named, {}).get(k, missing) != v),
        )
    else:
        name, left = min(((n, differ(o)) for n, o in presets.items()), key=lambda f: len(f[1]))
    return name + (f" + {', '.join(left)}" if left else "")


def _shared_text(row: Row) -> str:
    """`` (5 side by side)`` when runs of ``row`` trained among other runner processes that
    ``--side-by-side`` started with them (``2–5`` when that differs, ``?`` for the runs whose
    records do not say); empty when every run says it trained alone, or none says."""
    known = [r.side_by_side for r in row.done if r.side_by_side is not None]
    if not known or max(known) <= 1:
        return ""
    lo, hi = min(known), max(known)
    unknown = " and ?" if len(known) < len(row.done) else ""
    return f" ({lo if lo == hi else f'{lo}–{hi}'}{unknown} side by side)"


def row_info(row: Row) -> RowInfo:
    """The :class:`RowInfo` of ``row``."""
    secs = [r.train_seconds for r in row.done if isinstance(r.train_seconds, (int, float))]
    predictions = []
    for rec in row.done:
        entries = {str(c.get("case_id")): c for c in reversed(rec.cases)}  # the first entry of a case
        predictions += [
            Prediction(case, path, entries.get(case, {})) for case, path in rec.predictions.items()
        ]
    return RowInfo(
        params=next((r.params for r in row.done if r.params), None),
        preset=(
            preset_name(row.model, dict(row.config.get("model", {}).get("kwargs") or {}))
            if row.kind == "train" and row.config.get("model")
            else None
        ),
        train_seconds=float(np.mean(secs)) if secs else None,
        train_seconds_text=(
            "–"
            if not secs
            else f"{np.mean(secs):.0f}"
            + (f" ({len(secs)} of {len(row.done)} runs)" if len(secs) < len(row.done) else "")
            + _shared_text(row)
        ),
        torch_threads=sorted({r.torch_threads for r in row.done if r.torch_threads is not None}),
        cpu_threads=sorted({r.torch_threads for r in row.done if r.torch_threads is not None and not r.gpu}),
        gpus=sorted({r.gpu for r in row.done if r.gpu}),
        budget=budget(row),
        seeds=runs_text(row, "seed"),
        folds=runs_text(row, "fold"),
        records=[r.run_id for r in row.records],
        provenance=provenance(row),
        saved_probabilities=any(
            r.eval_settings.get("save_probabilities") and r.predictions for r in row.done
        ),
        predictions=predictions,
        save_predictions=next(
            (
                r.eval_settings.get("save_predictions")
                for r in row.done
                if isinstance(r.eval_settings.get("save_predictions"), int)
            ),
            None,
        ),
    )
