"""The leaderboard's links to the evaluations that are not tables of runs: ``segbench uncertainty``
(per-case uncertainty against error, OOD AUROC) and ``segbench multirater`` (calibration against
several raters), each a record under ``<results>/<kind>/<name>.json`` with its generated Markdown
beside it (:mod:`bench.evaluate.uncertainty_eval`, :mod:`bench.evaluate.multirater_eval`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from bench.leaderboard.rows import train_budget, value_text
from bench.metrics import aurc

KINDS = {
    "uncertainty": "Uncertainty against error and out-of-distribution detection (`segbench uncertainty`)",
    "multirater": "Calibration against several raters, CURVAS-style (`segbench multirater`)",
}


def protocol_sections(results: Path, out: Path) -> list[str]:
    """Markdown lines: per kind of :data:`KINDS` with records under ``results``, one item per record
    linking its Markdown (relative to ``out``'s folder) with the record's own description line."""
    lines: list[str] = []
    for kind, title in KINDS.items():
        records = _records(results, kind)
        items = []
        for path, record in records:
            describe = _description(path.with_suffix(".md"))
            name = record.get("name", path.stem)
            items.append(f"- [{name}]({_page_link(path, out)})" + (f": {describe}" if describe else ""))
        if items:
            table = uncertainty_table(results, out, records) if kind == "uncertainty" else []
            lines += [f"### {title}", "", *table, *items, ""]
    return ["## Other evaluation protocols", "", *lines] if lines else []


def _description(page: Path) -> str:
    """The first line after a generated page's title (what was evaluated), or ``""``."""
    try:
        text = page.read_text().splitlines()
    except OSError:
        return ""
    body = [line for line in text[1:] if line.strip()]
    return body[0].strip() if body else ""


def _page_link(path: Path, out: Path) -> str:
    """The Markdown page beside the record ``path``, relative to ``out``'s folder."""
    return Path(os.path.relpath(path.with_suffix(".md").resolve(), Path(out).parent.resolve())).as_posix()


def _records(results: Path, kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, record)`` of the readable records of ``kind`` under ``<results>/<kind>/``, sorted."""
    found = []
    for path in sorted((Path(results) / kind).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("kind") == kind:
            found.append((path, record))
    return found


def _cell(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _member_records(results: Path, members: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """``(run id, record)`` of the members whose own run record under ``results`` is readable."""
    found = []
    for m in members:
        try:
            rec = json.loads((Path(results) / f"{m['run_id']}.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict):
            found.append((str(m["run_id"]), rec))
    return found


def _member_setting(members: list[tuple[str, dict[str, Any]]]) -> str:
    """``sweep, budget`` of the first member record (with its model options, e.g. ``dropout 0.1``),
    so that rows of one model from different sweeps tell apart; ``–`` without one."""
    for _, rec in members:
        cfg = rec.get("config")
        if not isinstance(cfg, dict):
            continue
        parts = [str(cfg.get("sweep") or "–")]
        budget = train_budget(cfg.get("trainer"))
        if budget:
            parts.append(budget)
        options = (cfg.get("model") or {}).get("kwargs") or {}
        parts += [f"{k} {value_text(v)}" for k, v in sorted(options.items())]
        return ", ".join(parts)
    return "–"


def _collapsed_members(members: list[tuple[str, dict[str, Any]]], n: int) -> str:
    """``"k of n runs collapsed (kind: run ids)"`` for the member records that state a degenerate
    prediction (``degenerate``), ``""`` when none does."""
    bad = []
    for run_id, rec in members:
        flag = rec.get("degenerate")
        if isinstance(flag, dict) and flag.get("kind"):
            bad.append(f"{flag['kind']}: `{run_id}`")
    return f"{len(bad)} of {n} runs collapsed ({'; '.join(bad)})" if bad else ""


def uncertainty_table(
    results: Path, out: Path, records: list[tuple[Path, dict[str, Any]]] | None = None
) -> list[str]:
    """Markdown lines: one row per ``uncertainty`` record (the members' row, linked to its page):
    the members' sweep, budget and model options (:func:`_member_setting`), runs, own test cases,
    the ensemble's mean Dice, the AURC of the oracle (cases accepted in order of their own error)
    and of a random order (the mean risk), the AURC of each score (the lowest as shown in bold,
    ties too), per OOD dataset the best AUROC and its score, and the members whose own records
    say they collapsed (:func:`_collapsed_members`). Every number is read from, or computed with
    :func:`bench.metrics.aurc` from, the record's per-case rows. ``records``: the ``uncertainty``
    records already read (:func:`_records`), read here when None."""
    found = _records(results, "uncertainty") if records is None else records
    rows = [(p, r) for p, r in found if {"inputs", "summary", "cases"} <= set(r)]
    scores: list[str] = []
    for _, rec in rows:
        scores += [k for k in rec.get("summary", {}) if k not in scores]
    if not rows or not scores:
        return []
    head = [
        "training set",
        "model / loss",
        "sweep, budget",
        "runs",
        "cases",
        "Dice",
        "oracle",
        "random",
        *scores,
        "best OOD AUROC",
        "notes",
    ]
    lines = [
        "AURC (risk 1 − Dice over the own test cases; lower is better) of each score next to the "
        "oracle's (cases accepted in order of their own error) and a random order's (the mean "
        "risk); a score is worth reading where it sits well below random. Best OOD AUROC: own test "
        "cases against another dataset's, 1 separates them perfectly, 0.5 is chance.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * 3 + "---:|" * (len(head) - 5) + "---|" * 2,
    ]
    for path, rec in rows:
        inp, summary = rec["inputs"], rec.get("summary", {})
        dice = [c["dice"] for c in rec.get("cases", []) if math.isfinite(c.get("dice", math.nan))]
        risk = [1.0 - d for d in dice]
        oracle = aurc(risk, risk) if risk else None
        random = float(sum(risk) / len(risk)) if risk else None
        values = {k: summary[k].get("aurc") if k in summary else None for k in scores}
        finite = [v for v in values.values() if v is not None]
        low = min(finite) if finite else None
        cells = [
            f"**{_cell(v)}**" if v is not None and _cell(v) == _cell(low) else _cell(v)
            for v in values.values()
        ]
        best = []
        for o in inp.get("ood", []):
            label = o["label"]
            by = {
                k: s["auroc"].get(label)
                for k, s in summary.items()
                if s.get("auroc", {}).get(label) is not None
            }
            if by:
                top = max(by, key=lambda k: by[k])
                best.append(f"{label} {by[top]:.3f} ({top})")
        members = _member_records(results, inp["members"])
        lines.append(
            "| "
            + " | ".join(
                [
                    inp["dataset"]["name"],
                    f"[{inp['model']} / {inp['loss']}]({_page_link(path, out)})",
                    _member_setting(members),
                    str(len(inp["members"])),
                    str(len(rec.get("cases", []))),
                    _cell(sum(dice) / len(dice) if dice else None),
                    _cell(oracle),
                    _cell(random),
                    *cells,
                    "; ".join(best) or "–",
                    _collapsed_members(members, len(inp["members"])),
                ]
            )
            + " |"
        )
    return [*lines, ""]
