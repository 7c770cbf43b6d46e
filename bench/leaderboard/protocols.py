"""The leaderboard's links to the evaluations that are not tables of runs: ``segbench uncertainty``
(per-case uncertainty against error, OOD AUROC) and ``segbench multirater`` (calibration against
several raters), each a record under ``<results>/<kind>/<name>.json`` with its generated Markdown
beside it (:mod:`bench.evaluate.uncertainty_eval`, :mod:`bench.evaluate.multirater_eval`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

KINDS = {
    "uncertainty": "Uncertainty against error and out-of-distribution detection (`segbench uncertainty`)",
    "multirater": "Calibration against several raters, CURVAS-style (`segbench multirater`)",
}


def protocol_sections(results: Path, out: Path) -> list[str]:
    """Markdown lines: per kind of :data:`KINDS` with records under ``results``, one item per record
    linking its Markdown (relative to ``out``'s folder) with the record's own description line."""
    lines: list[str] = []
    for kind, title in KINDS.items():
        items = []
        for path in sorted((Path(results) / kind).glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or record.get("kind") != kind:
                continue
            page = path.with_suffix(".md")
            describe = _description(page)
            link = Path(os.path.relpath(page.resolve(), Path(out).parent.resolve())).as_posix()
            name = record.get("name", path.stem)
            items.append(f"- [{name}]({link})" + (f": {describe}" if describe else ""))
        if items:
            lines += [f"### {title}", "", *items, ""]
    return ["## Other evaluation protocols", "", *lines] if lines else []


def _description(page: Path) -> str:
    """The first line after a generated page's title (what was evaluated), or ``""``."""
    try:
        text = page.read_text().splitlines()
    except OSError:
        return ""
    body = [line for line in text[1:] if line.strip()]
    return body[0].strip() if body else ""
