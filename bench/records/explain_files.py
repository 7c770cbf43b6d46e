"""Where ``segbench explain`` writes saliency maps, and the reader of what it wrote.

``<results>/explain/<run_id>/<case_id>/``: one ``<method>.npy`` per attribution method, the figure
``explain.png`` and ``explain.json`` (:mod:`bench.evaluate.explain` writes them). The HTML report
(:mod:`bench.leaderboard.html`) shows the figures beside the rows whose runs they explain; both read
them through :func:`explain_panels`, so neither imports the other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXPLAIN_DIR = "explain"
FIGURE = "explain.png"
INFO = "explain.json"


def explain_panels(results: Path, run_id: str) -> list[dict[str, Any]]:
    """The figures ``segbench explain`` wrote for ``run_id`` under ``results``, one per case
    (sorted by case id): ``{case_id, class, methods, figure (Path), href (relative to results),
    sanity ({method: passed} or None)}``. An unreadable ``explain.json`` is left out."""
    base = Path(results) / EXPLAIN_DIR / run_id
    panels = []
    for info_path in sorted(base.glob(f"*/{INFO}")):
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            continue
        figure = info_path.parent / str(info.get("figure", FIGURE))
        if not figure.is_file():
            continue
        sanity = info.get("sanity")
        panels.append(
            {
                "case_id": str(info.get("case_id", info_path.parent.name)),
                "class": info.get("class"),
                "methods": sorted(info.get("methods") or {}),
                "figure": figure,
                "href": figure.relative_to(Path(results)).as_posix(),
                "sanity": {m: bool(c["passed"]) for m, c in sanity.items()} if sanity else None,
            }
        )
    return panels
