"""The leaderboard: tables of the run records, their statistics, and every output made from them.

Modules, bottom up (each imports only those above it in this list):

- :mod:`~bench.leaderboard.stats`: bootstrap intervals, a row's summary, the Wilcoxon signed-rank
  test, Holm, rankings and rank stability (numbers only; reads no record);
- :mod:`~bench.leaderboard.rows`: group :class:`~bench.records.Record` objects into tables and rows,
  label them, and the notes a row's records call for;
- :mod:`~bench.leaderboard.format`: the one formatting leaf (numbers, cells, budget, seeds,
  provenance, legend) every output spells values with;
- :mod:`~bench.leaderboard.analysis`: :func:`analyse` a table into an :class:`Analysis`, whose
  ``to_dict()`` is the JSON export;
- the renderers, peers that read an :class:`Analysis` and never each other:
  :mod:`~bench.leaderboard.markdown`, :mod:`~bench.leaderboard.exports` (CSV, JSON, LaTeX),
  :mod:`~bench.leaderboard.html` (the report) and :mod:`~bench.leaderboard.plots` (the figures);
- :mod:`~bench.leaderboard.cache`: each table's :class:`Analysis` kept between renders under
  ``<results>/.cache/leaderboard/`` (keyed by its records, options and code), and the stamp of the
  drawn figures;
- :mod:`~bench.leaderboard.board`: :func:`write_leaderboard` and :func:`render`, which wire them up;
- :mod:`~bench.leaderboard.claims`: paired loss comparisons across models (a command of its own).

The leaderboard imports the records, the metric registry and the reduction, never the runner, the
cluster code or the CLI.
"""

from bench.leaderboard.analysis import RANK_METRICS, Analysis, analyse
from bench.leaderboard.board import FORMATS, analyse_records, render, render_analyses, write_leaderboard
from bench.leaderboard.cache import AnalysisCache
from bench.leaderboard.rows import Row, Table, group_records

__all__ = [
    "FORMATS",
    "RANK_METRICS",
    "Analysis",
    "AnalysisCache",
    "Row",
    "Table",
    "analyse",
    "analyse_records",
    "group_records",
    "render",
    "render_analyses",
    "write_leaderboard",
]
