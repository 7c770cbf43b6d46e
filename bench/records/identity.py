"""Identities: of a run, of a leaderboard row, of evaluation and ensemble records.

``hash_config`` gives the 12-hex-digit ``config_hash`` in every run id; ``row_key`` groups the runs
of one leaderboard row (they differ only in seed / fold). Both work on ``RunConfig.to_dict()``
form, so records written by any segbench version are keyed the same way. ``evaluation_id`` and
``ensemble_id`` name the records of ``segbench evaluate`` and ``segbench ensemble``; every hash is
:func:`digest` of canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

HASH_EXCLUDED: tuple[str, ...] = (
    "sweep",
    "dataset.kwargs.root",
    "dataset.kwargs.download",
    "dataset.kwargs.cache_dir",
    "dataset.kwargs.disk_cache",
    "data.num_workers",
    "trainer.log_every_n_steps",
    "trainer.checkpoint_every_n_steps",
    "trainer.val_every_n_steps",
    "trainer.val_max_cases",
    "trainer.torch_threads",
    "eval.save_predictions",
    "eval.save_probabilities",
    "eval.keep_model",
    "eval.external",
)
"""Dotted paths left out of ``config_hash``: they cannot change a recorded number (the sweep's
name, where the dataset lies on this machine and whether it may be downloaded - its files are
verified by checksum -, loader workers, logging cadence, checkpoint cadence, which predictions
are saved, whether the trained weights are kept). The same run on two machines with the data in
different folders has one id.

The validation fields (``val_every_n_steps``, ``val_max_cases``) only decide when and on how many
cases ``val_dice`` is logged: validation selects nothing, and the runner restores the RNG states
after every validation (:class:`bench.run.validation.ValidationRNG`), so the training that follows
draws the same numbers whatever the cadence. ``torch_threads`` says how many threads compute, like
``data.num_workers``: it can move the last digits of a floating-point sum (a CHASE_DB1 run's mean
Dice was 0.50480 on one thread, 0.50489 on two), which segbench has always stated in the record
(``device.torch_threads``) rather than in the id; runs of one id were recorded with 1 and 2.

``eval.external`` (the other datasets a trained run is also tested on) is excluded rather than
put in :data:`HASH_DEFAULTS`: those tests are separate ``evaluation`` records, made by the kept model
after the run's own record is written, so no value of the field can change a number of the run
itself. Excluded, adding an external dataset to a finished sweep tests its done runs without
training them again, and runs with and without external tests are one leaderboard row."""

HASH_DEFAULTS: dict[str, Any] = {
    "eval.tta": "none",
    "eval.postprocess": "none",
    "scheme": {"name": "supervised", "kwargs": {}},
    "data.labelled_fraction": 1.0,
}
"""Dotted paths left out of ``config_hash`` and of a row's identity *only while they hold this
value*: fields added after runs were recorded, whose default reproduces what those runs did. A
field added with its default changes ``RunConfig.to_dict()`` and would change every hash; dropped at
its default, every earlier run id (and the shipped sweeps' ids pinned by ``tests/bench/test_hash.py``)
stays the same, and records written before the field existed (which lack it) group with new ones in
one leaderboard row. Any other value is hashed, so e.g. a post-processed run is a different run and
a different row than the raw one."""

ROW_EXCLUDED: tuple[str, ...] = ("seed", "fold", *HASH_EXCLUDED)
"""Also left out of a leaderboard row's identity: the runs of a row differ only in seed / fold."""


def _parent(d: Any, path: str, *, create: bool = False) -> tuple[dict[str, Any] | None, str]:
    """The mapping that holds dotted ``path``'s last key in ``d`` and that key; ``(None, key)`` when
    a step on the way is missing or not a mapping (``create``: missing steps become empty ones)."""
    *parents, leaf = path.split(".")
    node: Any = d
    for key in parents:
        if not isinstance(node, dict):
            return None, leaf
        node = node.setdefault(key, {}) if create else node.get(key)
    return (node if isinstance(node, dict) else None), leaf


def _drop_paths(d: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    d = json.loads(json.dumps(d))
    for path in paths:
        node, leaf = _parent(d, path)
        if node is not None:
            node.pop(leaf, None)
    return d


def _drop_defaults(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without the :data:`HASH_DEFAULTS` paths that hold their default value (a copy)."""
    d = json.loads(json.dumps(d))
    for path, default in HASH_DEFAULTS.items():
        node, leaf = _parent(d, path)
        if node is not None and leaf in node and node[leaf] == default:
            del node[leaf]
    return d


def with_hash_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a copy) with every :data:`HASH_DEFAULTS` field it lacks set to its default: a
    record written before a field existed did what the default does (``scheme`` supervised,
    ``data.labelled_fraction`` 1.0), so readers see one value either way."""
    out = json.loads(json.dumps(config, default=str))
    for path, default in HASH_DEFAULTS.items():
        node, leaf = _parent(out, path, create=True)
        if node is not None:
            node.setdefault(leaf, json.loads(json.dumps(default)))
    return out


def hash_config(d: Mapping[str, Any]) -> str:
    """SHA-256 (12 hex digits) of a ``RunConfig.to_dict()`` without :data:`HASH_EXCLUDED` and
    without the :data:`HASH_DEFAULTS` fields at their default."""
    return digest(_drop_paths(_drop_defaults(dict(d)), HASH_EXCLUDED))


def row_key(config: Mapping[str, Any]) -> str:
    """A leaderboard row's identity: the config without :data:`ROW_EXCLUDED` and without the
    :data:`HASH_DEFAULTS` fields at their default (canonical JSON)."""
    return json.dumps(_drop_paths(_drop_defaults(dict(config)), ROW_EXCLUDED), sort_keys=True)


def digest(data: Any, length: int = 12) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``data`` as canonical JSON (sorted keys;
    values JSON cannot hold are written with ``str``). Every content hash of a record uses it."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def row_tag(key: str) -> str:
    """Six hex digits that tell apart two rows with the same model and loss names (``[row <tag>]``)."""
    return hashlib.sha256(key.encode()).hexdigest()[:6]


def slug(text: str) -> str:
    """``text`` as a lower-case file-name part (runs of other characters become ``-``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "method"


def evaluation_id(dataset: str, method: str, inputs: Any) -> str:
    """``eval__<dataset>__<method>__<digest of the inputs>`` (see :func:`bench.evaluate.score.execute`)."""
    return f"eval__{slug(dataset)}__{slug(method)}__{digest(inputs)}"


def ensemble_id(config: Mapping[str, Any], key: str, fold: int, member_ids: Sequence[str]) -> str:
    """``ens__<dataset>__<model>__<loss>__f<fold>__<digest>`` of one row's (``key``) fold and its
    members; ``config`` is a member's (every member has the row's model and loss)."""
    loss = str(config["loss"]["name"]).replace("*", "x")
    tag = digest([key, fold, sorted(member_ids)])
    return f"ens__{config['dataset']['name']}__{config['model']['name']}__{loss}__f{fold}__{tag}"
