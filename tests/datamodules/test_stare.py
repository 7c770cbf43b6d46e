"""STARE has no shared copy: a tiny release in the exact public layout, fetched through file:// URLs."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from datamodules.download import Resource
from datamodules.stare import StareDataModule

from .conftest import fundus_like, save_png, train_one_step

_LABELLED = ("im0001", "im0002", "im0044", "im0077", "im0081")


def _tar_flat(path: Path, files: list[Path]) -> Path:
    with tarfile.open(path, "w") as tf:
        for f in files:
            tf.add(f, arcname=f.name)  # the public tars are flat
    return path


@pytest.fixture
def stare_release(tmp_path: Path) -> tuple[Resource, ...]:
    """stare-images.tar (6 images, 1 unlabelled), labels-ah.tar (5), labels-vk.tar (4) via file:// URLs."""
    src, rng = tmp_path / "src", np.random.default_rng(1)
    images, ah, vk = [], [], []
    for cid in (*_LABELLED, "im0100"):
        rgb, lab = fundus_like(rng, (60, 70))
        images.append(save_png(src / "images" / f"{cid}.ppm.gz", rgb))
        if cid in _LABELLED:
            ah.append(save_png(src / "ah" / f"{cid}.ah.ppm.gz", np.repeat(lab[..., None], 3, -1)))
            if cid != "im0081":
                vk_lab = lab.copy()
                vk_lab[:10] = 0
                vk.append(save_png(src / "vk" / f"{cid}.vk.ppm.gz", np.repeat(vk_lab[..., None], 3, -1)))
    tars = {
        "stare-images.tar": _tar_flat(tmp_path / "stare-images.tar", images),
        "labels-ah.tar": _tar_flat(tmp_path / "labels-ah.tar", ah),
        "labels-vk.tar": _tar_flat(tmp_path / "labels-vk.tar", vk),
    }
    return tuple(Resource(p.as_uri(), name, extract_to=name.removesuffix(".tar")) for name, p in tars.items())


def test_stare_download_index_and_load(stare_release, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(StareDataModule, "resources", stare_release)
    root = tmp_path / "STARE"
    assert not StareDataModule.is_present(root)
    dm = StareDataModule(
        root,
        download=True,
        cache_dir=cache_dir,
        patch_size=(32, 32),
        batch_size=2,
        samples_per_epoch=2,
        num_folds=4,
    )
    with pytest.warns(UserWarning, match="no published checksum"):
        dm.setup()
    assert (root / "labels-ah" / "im0001.ah.ppm.gz").is_file()
    assert sorted(dm._refs) == sorted(_LABELLED)
    assert len(dm.splits["test"]) == 1 and dm.split_info()["test_source"] == "held_out"
    assert len(dm.splits["val"]) == 1 and len(dm.splits["train"]) == 3
    case = dm.case("im0001")
    assert case.image.shape == (3, 60, 70) and case.fov is not None and case.fov.any()
    assert set(case.extras) >= {"label_ah", "label_vk"}
    assert not np.array_equal(case.extras["label_ah"], case.extras["label_vk"])
    only_ah = dm.case("im0081")
    assert "label_vk" not in only_ah.extras
    vk = StareDataModule(root, cache_dir=cache_dir, annotator="vk").load_case(dm._refs["im0081"])
    assert vk.extras["annotator"] == "ah"  # falls back when the case lacks the chosen annotator
    green, vessels = case.image[1], case.label.astype(bool)
    assert green[vessels & case.fov].mean() < green[~vessels & case.fov].mean()
    train_one_step(dm)
