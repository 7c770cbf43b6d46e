"""ISBI 2012 EM membranes: shared PNG slices, and the official TIFF-stack layout built in a temp folder."""

from __future__ import annotations

import numpy as np
import tifffile
from PIL import Image

from datamodules import create_datamodule

from .conftest import ring_contrast, shared_root, train_one_step


def test_png_slices(cache_dir):
    root = shared_root("ISBI2012_EM_membrane")
    dm = create_datamodule(
        "isbi2012_em",
        root=root,
        cache_dir=cache_dir,
        num_folds=5,
        patch_size=(32, 32),
        batch_size=2,
        samples_per_epoch=2,
        limit_cases=2,
    )
    dm.setup()
    assert len(dm.list_cases()) == dm.num_cases == 30
    case = dm.case(dm.splits["train"][0])
    assert case.image.shape == (1, 512, 512) and case.label.shape == (512, 512)
    assert set(np.unique(case.label)) == {0, 1}
    raw = np.asarray(Image.open(root / "train/label" / f"{int(case.case_id[6:])}.png"))
    np.testing.assert_array_equal(case.label, (raw == 0).astype(np.int64))  # foreground = membrane (black)
    assert 0.1 < case.label.mean() < 0.4  # membranes are the thin minority
    assert case.image[0][case.label == 1].mean() < case.image[0][case.label == 0].mean()  # membranes darker
    assert ring_contrast(case.image[0], case.label, width=2) < 0
    train_one_step(dm)


def test_tiff_stack_layout_matches_png_layout(tmp_path, cache_dir):
    root = shared_root("ISBI2012_EM_membrane")
    images = np.stack([np.asarray(Image.open(root / f"train/image/{i}.png").convert("L")) for i in range(3)])
    labels = np.stack([np.asarray(Image.open(root / f"train/label/{i}.png").convert("L")) for i in range(3)])
    stack_root = tmp_path / "isbi"  # a temp folder only: nothing derived is kept
    stack_root.mkdir()
    tifffile.imwrite(stack_root / "train-volume.tif", images)
    tifffile.imwrite(stack_root / "train-labels.tif", labels)
    stacks = create_datamodule("isbi2012_em", root=stack_root, cache_dir=cache_dir)
    pngs = create_datamodule("isbi2012_em", root=root, cache_dir=cache_dir)
    refs = stacks.list_cases()
    assert [r.case_id for r in refs] == ["slice_00", "slice_01", "slice_02"]
    png_refs = {r.case_id: r for r in pngs.list_cases()}
    for ref in refs:
        a, b = stacks.load_case(ref), pngs.load_case(png_refs[ref.case_id])
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_allclose(a.image, b.image, atol=1e-5)
