"""A dataset read through a generic reader (image_folder, nnunet_raw) is named in the run's
identity by its files (``dataset.kwargs.files_digest``), since its folder is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.config import sweep_from_dict
from bench.run import plan_sweep
from tests.conftest import tiny_sweep_dict


def _folder(root: Path, seed: int, n: int = 4) -> Path:
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray((rng.random((32, 32)) > 0.5).astype(np.uint8)).save(root / "masks" / f"c{i}.png")
    return root


def _run_id(root: Path) -> str:
    sweep = tiny_sweep_dict(datasets=[{"name": "image_folder", "root": str(root)}])
    (cfg,) = plan_sweep(sweep_from_dict(sweep))
    return cfg.run_id


def test_two_datasets_through_one_reader_have_two_run_ids(tmp_path: Path) -> None:
    a, b = _folder(tmp_path / "a", 0), _folder(tmp_path / "b", 1, n=5)
    assert _run_id(a) != _run_id(b)


def test_the_same_files_in_another_folder_are_the_same_run(tmp_path: Path) -> None:
    a, b = _folder(tmp_path / "a", 0), _folder(tmp_path / "b", 0)
    assert _run_id(a) == _run_id(b)


def test_files_changed_after_planning_are_refused(tmp_path: Path) -> None:
    from bench.run.build import build_datamodule
    from datamodules.args import DataArgumentError

    a = _folder(tmp_path / "a", 0)
    (cfg,) = plan_sweep(sweep_from_dict(tiny_sweep_dict(datasets=[{"name": "image_folder", "root": str(a)}])))
    assert cfg.dataset.kwargs["files_digest"]
    build_datamodule(cfg)  # unchanged: fine
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(a / "masks" / "c9.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(a / "images" / "c9.png")
    with pytest.raises(DataArgumentError, match="changed since this run was planned"):
        build_datamodule(cfg)


def test_builtin_datasets_carry_no_digest() -> None:
    (cfg,) = plan_sweep(sweep_from_dict(tiny_sweep_dict()))
    assert "files_digest" not in cfg.dataset.kwargs
