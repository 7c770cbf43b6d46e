"""Deterministic train/val/test splits of a dataset's index, saved once as JSON and reused.

A dataset with a fixed validation split takes ``train``/``val``/``test`` from its index. Any
other dataset keeps its official test cases (if any) and partitions the rest into seeded folds
(:func:`make_folds`), keeping the cases of one group (``CaseRef.info["group"]``, e.g. both eyes
of one subject) together. The folds are written once to
``<cache_dir>/splits/<name>-seed<seed>-k<folds>-<key>.json`` (``key`` hashes the case ids and
groups) so every run and worker sees the same split. Without official test cases the held-out
fold doubles as test.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datamodules.base import CaseRef


def load_or_make_split(
    refs: Sequence[CaseRef],
    *,
    name: str,
    cache_dir: Path,
    fold: int,
    num_folds: int,
    split_seed: int,
    val_fraction: float,
    fixed_val_split: bool = False,
) -> dict[str, list[str]]:
    """The case ids of ``train``, ``val`` and ``test`` for ``fold``.

    Args:
        refs: the dataset's index; ``CaseRef.split`` holds the official split where one exists.
        name: dataset name (the split file's prefix).
        cache_dir: the split file goes to ``cache_dir/splits/``.
        fold: which fold is ``val`` (ignored with ``fixed_val_split``).
        num_folds: number of folds; ``1`` keeps ``val_fraction`` of the training pool aside.
        split_seed: seed of the fold assignment.
        val_fraction: held-out fraction when ``num_folds == 1``.
        fixed_val_split: take ``train``/``val`` from ``CaseRef.split`` instead of folds.
    """
    test = sorted(r.case_id for r in refs if r.split == "test")
    if fixed_val_split:
        train = sorted(r.case_id for r in refs if r.split == "train")
        val = sorted(r.case_id for r in refs if r.split == "val")
        return {"train": train, "val": val, "test": test}
    pool = sorted(r.case_id for r in refs if r.split != "test")
    groups = {r.case_id: str(r.info.get("group", r.case_id)) for r in refs if r.split != "test"}
    grouped = any(g != c for c, g in groups.items())
    key_src = [pool, test, [groups[c] for c in pool]] if grouped else [pool, test]
    key = hashlib.sha256(json.dumps(key_src).encode()).hexdigest()[:10]
    path = Path(cache_dir) / "splits" / f"{name}-seed{split_seed}-k{num_folds}-{key}.json"
    if path.exists():
        folds = json.loads(path.read_text())["folds"]
    else:
        folds = make_folds(pool, num_folds, split_seed, val_fraction, groups)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"pool": pool, "test": test, "folds": folds}, indent=1))
        tmp.replace(path)
    val = folds[fold]
    train = [c for c in pool if c not in set(val)]
    if not test:  # no official test split: the held-out fold doubles as test
        test = list(val)
    return {"train": train, "val": val, "test": test}


def make_folds(
    pool: list[str],
    num_folds: int,
    seed: int,
    val_fraction: float,
    groups: dict[str, str] | None = None,
) -> list[list[str]]:
    """Seeded k-fold partition of ``pool`` (``num_folds == 1``: one held-out fraction).

    With ``groups`` (case id -> group, e.g. the subject of both eyes) whole groups are assigned
    to folds, so no group is split between training and validation.
    """
    groups = groups or {}
    members: dict[str, list[str]] = {}
    for c in pool:
        members.setdefault(groups.get(c, c), []).append(c)
    units = sorted(members)
    order = list(np.random.default_rng(seed).permutation(len(units)))
    shuffled = [units[i] for i in order]
    if num_folds <= 1:
        n_val = max(1, round(val_fraction * len(units)))
        return [sorted(c for u in shuffled[:n_val] for c in members[u])]
    if num_folds > len(units):
        raise ValueError(f"num_folds={num_folds} exceeds the {len(units)} non-test cases (or groups)")
    return [sorted(c for u in shuffled[k::num_folds] for c in members[u]) for k in range(num_folds)]
