"""``config_hash`` covers every field that can change a result, and only those.

Each result-affecting field of ``RunConfig`` is mutated in turn and must change the run id; the
documented exclusions (``HASH_EXCLUDED``) must not. A new config field fails this test until it is
listed in one of the two tables below, so nobody adds a field the hash silently ignores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from bench.config import RunConfig, run_from_dict, sweep_from_dict
from bench.records.identity import HASH_EXCLUDED, ROW_EXCLUDED, row_key

# dotted path -> a value different from the default
_CHANGES: dict[str, Any] = {
    "dataset.name": "synthetic_vessels_3d",
    "dataset.kwargs": {"num_train": 5},
    "model.name": "resenc_unet",
    "model.kwargs": {"channels": [4, 8]},
    "loss.name": "dice",
    "loss.kwargs": {"lambda_ce": 2.0},
    "seed": 1,
    "fold": 1,
    "trainer.max_steps": 201,
    "trainer.max_epochs": 3,
    "trainer.val_check_interval": 7,
    "trainer.check_val_every_n_epoch": 2,
    "trainer.limit_val_batches": 0.5,
    "trainer.accelerator": "gpu",
    "trainer.devices": 2,
    "trainer.strategy": "ddp",
    "trainer.num_nodes": 2,
    "trainer.precision": "bf16-mixed",
    "trainer.gradient_clip_val": 1.0,
    "trainer.deterministic": True,
    "optim.optimizer": "sgd",
    "optim.lr": 0.5,
    "optim.weight_decay": 0.1,
    "optim.momentum": 0.9,
    "optim.scheduler": "cosine",
    "optim.warmup_steps": 3,
    "optim.sam_rho": 0.1,
    "optim.sam_base": "adamw",
    "data.batch_size": 3,
    "data.patch_size": [48, 48],
    "data.samples_per_epoch": 17,
    "data.fg_oversample": 0.9,
    "data.augment": {"flip": 0.1},
    "data.num_folds": 3,
    "data.split_seed": 5,
    "data.labelled_fraction": 0.5,
    "scheme.name": "mean_teacher",
    "scheme.kwargs": {"weight": 2.0},
    "eval.sw_batch_size": 2,
    "eval.sw_overlap": 0.5,
    "eval.betti_patch": 16,
    "eval.nsd_tolerance": 2.0,
    "eval.tta": "flip",
    "eval.postprocess": "largest_component",
}
_EXCLUDED: dict[str, Any] = {
    "sweep": "another-name",
    "data.num_workers": 4,
    "trainer.log_every_n_steps": 3,
    "trainer.checkpoint_every_n_steps": 9,
    "trainer.val_every_n_steps": 7,
    "trainer.val_max_cases": -1,
    "trainer.torch_threads": 3,
    "eval.save_predictions": 5,
    "eval.save_probabilities": True,
    "eval.keep_model": "none",
    "eval.external": [{"name": "drive", "kwargs": {}}],
}


def _base() -> RunConfig:
    return sweep_from_dict({}).expand()[0]


def _set(cfg: RunConfig, path: str, value: Any) -> RunConfig:
    d = cfg.to_dict()
    node = d
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    return run_from_dict(d)


def _leaf_paths(d: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and k not in ("kwargs", "augment"):
            out += _leaf_paths(v, f"{path}.")
        else:
            out.append(path)
    return out


# dataset options that say where the data lies, not what it is (verified by checksum)
_EXCLUDED_KWARGS = {
    "dataset.kwargs.root": "/elsewhere",
    "dataset.kwargs.download": False,
    "dataset.kwargs.cache_dir": "/tmp/cache",
    "dataset.kwargs.disk_cache": False,  # where decoded cases are kept: the same arrays either way
}


def test_every_config_field_is_classified() -> None:
    fields = set(_leaf_paths(_base().to_dict()))
    assert fields == set(_CHANGES) | set(_EXCLUDED), "classify new fields in _CHANGES or _EXCLUDED"
    assert set(_EXCLUDED) | set(_EXCLUDED_KWARGS) == set(HASH_EXCLUDED)


@pytest.mark.parametrize("path", sorted(_EXCLUDED_KWARGS))
def test_where_the_data_lies_keeps_the_run_id(path: str) -> None:
    base = _set(_base(), "dataset.kwargs", {"num_train": 5})
    d = base.to_dict()
    d["dataset"]["kwargs"][path.rsplit(".", 1)[1]] = _EXCLUDED_KWARGS[path]
    moved = run_from_dict(d)
    assert moved.run_id == base.run_id
    assert row_key(moved.to_dict()) == row_key(base.to_dict())


@pytest.mark.parametrize("path", sorted(_CHANGES))
def test_a_result_affecting_field_changes_the_run_id(path: str) -> None:
    base = _base()
    changed = _set(base, path, _CHANGES[path])
    assert changed != base
    assert changed.config_hash != base.config_hash
    assert changed.run_id != base.run_id


@pytest.mark.parametrize("path", sorted(_EXCLUDED))
def test_an_excluded_field_keeps_the_run_id(path: str) -> None:
    base = _base()
    assert _set(base, path, _EXCLUDED[path]).run_id == base.run_id


def test_row_key_ignores_seed_and_fold_but_not_sizes_or_budgets() -> None:
    base = _base().to_dict()
    assert set(ROW_EXCLUDED) >= {"seed", "fold"}
    other_seed = _set(_base(), "seed", 3).to_dict()
    assert row_key(other_seed) == row_key(base)
    for path in ("model.kwargs", "trainer.max_steps", "data.patch_size", "dataset.kwargs"):
        assert row_key(_set(_base(), path, _CHANGES[path]).to_dict()) != row_key(base), path


def test_the_hash_is_the_hash_of_the_whole_dict() -> None:
    """A dataclass field added without a to_dict() entry would escape the hash."""
    cfg = _base()
    assert set(cfg.to_dict()) == {f.name for f in dataclasses.fields(cfg)}


# The run ids of configs that set trainer.check_val_every_n_epoch (every shipped sweep does) are
# the ids they had before the validation fields existed; these are taken from records in results/.
_PINNED = {
    "bench/sweeps/chase_db1.yaml": "chase_db1__unet__dice_ce__s0f0__83c2270b6274",
    "bench/sweeps/synthetic_vessels.yaml": "synthetic_vessels__att_swin_unet__dice__s0f0__80a96409a0fa",
    "bench/sweeps/msd_hippocampus.yaml": "msd_hippocampus__unet__dice_ce__s0f0__ff470c642e75",
    None: "synthetic_vessels__unet__dice_ce__s0f0__33aeff47292e",
}


@pytest.mark.parametrize("sweep", list(_PINNED), ids=str)
def test_shipped_sweeps_keep_their_run_ids(sweep: str | None) -> None:
    from bench.config import load_sweep
    from tests.conftest import REPO

    first = load_sweep(None if sweep is None else REPO / sweep).expand()[0]
    assert first.run_id == _PINNED[sweep]


def test_validation_and_thread_fields_do_not_change_an_explicit_cadence_id() -> None:
    """A config that sets check_val_every_n_epoch: the new fields' defaults are not in its hash."""
    base = _set(_base(), "trainer.check_val_every_n_epoch", 1)
    d = base.to_dict()
    for key in ("val_every_n_steps", "val_max_cases", "torch_threads"):
        d["trainer"].pop(key)  # as in a record written before these fields existed
    assert run_from_dict(d).run_id == base.run_id
