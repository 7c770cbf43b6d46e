"""Deterministic train/val/test splits of a dataset's index, saved once as JSON and reused.

A dataset with a fixed validation split takes ``train``/``val``/``test`` from its index. Any
other dataset:

1. keeps its official test cases (``CaseRef.split == "test"``), or, when the index has none,
   holds out a seeded test set first: ``test_fraction`` of the cases (at least one), drawn by
   :func:`hold_out` from ``split_seed`` alone, so it is the same for every fold and every
   ``num_folds``;
2. partitions the remaining cases into seeded folds (:func:`make_folds`); fold ``fold`` is
   ``val``, the rest ``train``. The test cases are never in any fold.

Both steps keep the cases of one group (``CaseRef.info["group"]``, e.g. both eyes of one
subject) together. The result is written once to
``<cache_dir>/splits/<name>-seed<seed>-k<folds>-<key>.json`` (``key`` hashes the case ids, their
official splits, the groups and the held-out fraction) so every run and worker sees the same
split. Under a label budget (``labelled_fraction < 1``) :func:`labelled_subset` draws the labelled
training cases and :func:`write_labelled_subset` records them next to the split file. A split
file that cannot be read or does not fit the index raises :class:`SplitFileError`
naming the file; segbench never deletes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from datamodules.base import CaseRef

_FORMAT = 2
_TEST_STREAM = 0x7E57  # separates the held-out draw from the fold draw of the same seed


class SplitFileError(ValueError):
    """A cached split file is unreadable or does not match the dataset's index (names the file)."""


@dataclass(frozen=True)
class Split:
    """One fold's case ids and how the test set was chosen.

    Attributes:
        train, val, test: sorted case ids.
        test_source: ``"official"`` (from the index) or ``"held_out"`` (seeded, :func:`hold_out`).
        test_fraction: the held-out fraction, None for an official test set.
        file: the split file, None for a fixed split (nothing to save).
    """

    train: list[str]
    val: list[str]
    test: list[str]
    test_source: str
    test_fraction: float | None
    file: Path | None


def _units(pool: Sequence[str], groups: dict[str, str]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for c in pool:
        members.setdefault(groups.get(c, c), []).append(c)
    return members


def hold_out(pool: list[str], fraction: float, seed: int, groups: dict[str, str] | None = None) -> list[str]:
    """Seeded held-out test set: ``round(fraction * groups)`` whole groups (at least 1) of ``pool``.

    Raises:
        ValueError: ``fraction`` outside ``(0, 1)`` or too few groups to keep any for training.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {fraction}")
    members = _units(pool, groups or {})
    units = sorted(members)
    n_test = max(1, round(fraction * len(units)))
    if n_test >= len(units):
        raise ValueError(f"{len(units)} case(s) or group(s) are too few to hold out a test set")
    order = np.random.default_rng([seed, _TEST_STREAM]).permutation(len(units))
    return sorted(c for i in order[:n_test] for c in members[units[i]])


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
    members = _units(pool, groups or {})
    units = sorted(members)
    order = list(np.random.default_rng(seed).permutation(len(units)))
    shuffled = [units[i] for i in order]
    if num_folds <= 1:
        n_val = max(1, round(val_fraction * len(units)))
        return [sorted(c for u in shuffled[:n_val] for c in members[u])]
    if num_folds > len(units):
        raise ValueError(f"num_folds={num_folds} exceeds the {len(units)} non-test cases (or groups)")
    return [sorted(c for u in shuffled[k::num_folds] for c in members[u]) for k in range(num_folds)]


def _read_split_file(path: Path, pool: list[str], test: list[str], num_folds: int) -> dict[str, Any]:
    """The saved split, checked against the index; :class:`SplitFileError` naming ``path`` otherwise."""
    try:
        saved = json.loads(path.read_text())
        folds = saved["folds"]
        ok = (
            saved.get("format") == _FORMAT
            and isinstance(folds, list)
            and all(isinstance(f, list) for f in folds)
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SplitFileError(f"{path}: unreadable split file ({type(e).__name__}: {e}); move it away") from e
    if not ok or len(folds) != max(num_folds, 1):
        raise SplitFileError(
            f"{path}: not a segbench split file for {max(num_folds, 1)} fold(s); move it away"
        )
    in_folds = [c for f in folds for c in f]
    if saved.get("pool") != pool or saved.get("test") != test or not set(in_folds) <= set(pool):
        raise SplitFileError(f"{path}: its case ids do not match the dataset's index; move it away")
    if len(in_folds) != len(set(in_folds)):
        raise SplitFileError(f"{path}: a case is in more than one fold; move it away")
    return saved


def load_or_make_split(
    refs: Sequence[CaseRef],
    *,
    name: str,
    cache_dir: Path,
    fold: int,
    num_folds: int,
    split_seed: int,
    val_fraction: float,
    test_fraction: float = 0.2,
    fixed_val_split: bool = False,
) -> Split:
    """The case ids of ``train``, ``val`` and ``test`` for ``fold``.

    Args:
        refs: the dataset's index; ``CaseRef.split`` holds the official split where one exists.
        name: dataset name (the split file's prefix).
        cache_dir: the split file goes to ``cache_dir/splits/``.
        fold: which fold is ``val`` (ignored with ``fixed_val_split``).
        num_folds: number of folds; ``1`` keeps ``val_fraction`` of the training pool aside.
        split_seed: seed of the held-out test set and of the fold assignment.
        val_fraction: held-out fraction when ``num_folds == 1``.
        test_fraction: fraction held out as test when the index has no test cases.
        fixed_val_split: take ``train``/``val`` from ``CaseRef.split`` instead of folds.

    Raises:
        SplitFileError: the saved split file is corrupt or does not fit the index.
    """
    official = sorted(r.case_id for r in refs if r.split == "test")
    if fixed_val_split:
        train = sorted(r.case_id for r in refs if r.split == "train")
        val = sorted(r.case_id for r in refs if r.split == "val")
        return Split(train, val, official, "official", None, None)
    everything = sorted(r.case_id for r in refs if r.split != "test")
    groups = {r.case_id: str(r.info.get("group", r.case_id)) for r in refs}
    source = "official" if official else "held_out"
    fraction = None if official else float(test_fraction)
    key_src = [
        [(r.case_id, r.split == "test", groups[r.case_id]) for r in sorted(refs, key=lambda r: r.case_id)]
    ]
    key_src.append(fraction)
    key = hashlib.sha256(json.dumps(key_src).encode()).hexdigest()[:10]
    path = Path(cache_dir) / "splits" / f"{name}-seed{split_seed}-k{num_folds}-{key}.json"
    test = official or hold_out(everything, float(test_fraction), split_seed, groups)
    pool = [c for c in everything if c not in set(test)]
    if path.exists():
        folds = _read_split_file(path, pool, test, num_folds)["folds"]
    else:
        folds = make_folds(pool, num_folds, split_seed, val_fraction, groups)
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {
            "format": _FORMAT,
            "test_source": source,
            "test_fraction": fraction,
            "split_seed": split_seed,
            "pool": pool,
            "test": test,
            "folds": folds,
        }
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(content, indent=1))
        tmp.replace(path)
    val = sorted(folds[fold])
    train = [c for c in pool if c not in set(val)]
    return Split(train, val, list(test), source, fraction, path)


_LABELLED_STREAM = 0x1AB3  # separates the labelled-subset draw from the split draws of the same seeds


def labelled_subset(
    train: Sequence[str], fraction: float, seed: int, split_seed: int
) -> tuple[list[str], list[str]]:
    """The labelled and unlabelled training cases under a label budget.

    ``n = max(1, round(fraction * len(train)))`` cases of the sorted ``train`` ids, in the order of
    ``np.random.default_rng([seed, split_seed, _LABELLED_STREAM]).permutation``, are labelled; with
    ``fraction >= 1`` every case is (and nothing is drawn). Val / test ids never enter.

    Returns:
        ``(labelled, unlabelled)``, each sorted.
    """
    ids = sorted(train)
    if fraction >= 1 or not ids:
        return ids, []
    n = max(1, round(fraction * len(ids)))
    order = np.random.default_rng([int(seed), int(split_seed), _LABELLED_STREAM]).permutation(len(ids))
    chosen = {ids[i] for i in order[:n]}
    return [c for c in ids if c in chosen], [c for c in ids if c not in chosen]


def labelled_subset_file(
    split_file: Path | None, cache_dir: Path, name: str, fraction: float, seed: int
) -> Path:
    """Where the labelled subset is written: ``<split file stem>.labelled-<fraction>-s<seed>.json`` next to
    the split file (a fixed split has none: ``<cache_dir>/splits/<name>-fixed.labelled-...``)."""
    stem = split_file.stem if split_file is not None else f"{name}-fixed"
    folder = split_file.parent if split_file is not None else Path(cache_dir) / "splits"
    return folder / f"{stem}.labelled-{fraction:g}-s{seed}.json"


def write_labelled_subset(path: Path, labelled: Sequence[str], unlabelled: Sequence[str]) -> None:
    """Write ``{"labelled": [...], "unlabelled": [...]}`` to ``path`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"labelled": list(labelled), "unlabelled": list(unlabelled)}, indent=1))
    tmp.replace(path)
