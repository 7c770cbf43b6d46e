"""Training patches through a real ``lightning.Trainer.fit``: new draws every epoch, reproducible per
seed, independent of workers; foreground oversampling, augmentation and multi-rater patches."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from datamodules import create_datamodule

from .conftest import TableDataModule


class BatchRecorder(L.LightningModule):
    """A 1x1 convolution that records every training batch it sees (lr 0: nothing else matters)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Conv2d(1, 2, 1)
        self.seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, batch["image"].clone(), batch["label"].clone()))
        return self.net(batch["image"]).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _synthetic(**kw):
    args = dict(size=(48, 48), num_train=3, num_val=1, num_test=1, patch_size=(16, 16), batch_size=2)
    args.update(kw)
    return create_datamodule("synthetic_vessels", **args)


def _fit(seed: int, num_workers: int = 0, epochs: int = 3) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    dm = _synthetic(samples_per_epoch=4, seed=seed, num_workers=num_workers, augment={"flip": 0.5})
    model = BatchRecorder()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    return model.seen


def _epoch_images(seen, epoch: int) -> torch.Tensor:
    return torch.cat([img for e, img, _ in seen if e == epoch])


@pytest.fixture(scope="module")
def fits() -> dict[str, list]:
    return {
        "a": _fit(seed=7),
        "b": _fit(seed=7),
        "other": _fit(seed=8),
        "workers": _fit(seed=7, num_workers=2),
    }


def test_every_epoch_draws_new_patches(fits):
    seen = fits["a"]
    assert [e for e, _, _ in seen] == [0, 0, 1, 1, 2, 2]  # 4 patches / batch 2, 3 epochs
    epochs = [_epoch_images(seen, e) for e in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.equal(epochs[i], epochs[j]), (i, j)


def test_same_seed_same_batches_other_seed_others(fits):
    for (_, img_a, lab_a), (_, img_b, lab_b) in zip(fits["a"], fits["b"], strict=True):
        assert torch.equal(img_a, img_b) and torch.equal(lab_a, lab_b)
    assert not torch.equal(_epoch_images(fits["a"], 0), _epoch_images(fits["other"], 0))


def test_persistent_workers_draw_the_same_batches_as_the_main_process(fits):
    # two persistent workers: epochs still differ and the draws equal the num_workers=0 run
    assert len(fits["workers"]) == len(fits["a"])
    for (_, img_a, lab_a), (_, img_w, lab_w) in zip(fits["a"], fits["workers"], strict=True):
        assert torch.equal(img_a, img_w) and torch.equal(lab_a, lab_w)


def _patches(dm, n_batches: int = 1) -> dict[str, torch.Tensor]:
    dm.setup()
    loader = dm.train_dataloader()
    batches = []
    for epoch in range(n_batches):
        loader.sampler.set_epoch(epoch)
        batches.extend(loader)
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def test_fg_oversample_is_honoured():
    def fg_fraction(p: float) -> tuple[float, float]:
        dm = _synthetic(patch_size=(8, 8), batch_size=16, samples_per_epoch=64, fg_oversample=p)
        lab = _patches(dm)["label"][:, 0]
        return float((lab.flatten(1).amax(1) > 0).float().mean()), float(lab[:, 4, 4].float().mean())

    always, never = fg_fraction(1.0), fg_fraction(0.0)
    # fg_oversample=1: every patch holds the foreground pixel it was centred on (centre pixel
    # itself unless the box was shifted at the image border); 0: uniform placement, vessels sparse
    assert always[0] == 1.0 and always[1] > 0.8
    assert never[0] < 0.6 and never[1] < 0.3


def _crop_positions(patch: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Where ``patch (C, h, w)`` occurs exactly in ``image (C, H, W)``: ``(K, 2)`` top-left corners."""
    windows = sliding_window_view(image, patch.shape)[0]  # (H-h+1, W-w+1, C, h, w)
    return np.argwhere(np.all(windows == patch, axis=(-3, -2, -1)))


def _find_crop(patch: np.ndarray, dm) -> tuple[str, tuple[int, int]] | None:
    for cid in dm.splits["train"]:
        pos = _crop_positions(patch, dm.case(cid).image)
        if len(pos):
            return cid, tuple(pos[0])
    return None


@pytest.mark.parametrize(
    ("augment", "undo"),
    [
        ({"flip": 1.0}, [lambda a: np.flip(a, (-2, -1))]),  # both axes flipped
        ({"rot90": 1.0}, [lambda a, k=k: np.rot90(a, -k, (-2, -1)) for k in (1, 2, 3)]),
    ],
)
def test_augmentation_on_and_off_is_visible_in_the_batches(augment, undo):
    plain = _synthetic(batch_size=8, samples_per_epoch=8, augment={})
    batch = _patches(plain)
    for img, lab in zip(batch["image"].numpy(), batch["label"].numpy(), strict=True):
        found = _find_crop(img, plain)
        assert found is not None  # no augmentation: an exact crop of a training case
        cid, (y, x) = found
        np.testing.assert_array_equal(lab[0], plain.case(cid).label[y : y + 16, x : x + 16])
    aug = _synthetic(batch_size=8, samples_per_epoch=8, augment=augment)
    batch = _patches(aug)
    for img, lab in zip(batch["image"].numpy(), batch["label"].numpy(), strict=True):
        assert _find_crop(img, aug) is None  # transformed
        undone = [(f(img), f(lab)) for f in undo]
        hits = [(u_lab, _find_crop(np.ascontiguousarray(u_img), aug)) for u_img, u_lab in undone]
        hits = [(u_lab, h) for u_lab, h in hits if h is not None]
        assert hits, "the undone patch is a crop of a training case"
        u_lab, (cid, (y, x)) = hits[0]
        np.testing.assert_array_equal(
            u_lab[0], aug.case(cid).label[y : y + 16, x : x + 16]
        )  # label moved too


def test_multi_rater_patches_and_batches(make_file_table, cache_dir):
    root = make_file_table(n=6)
    dm = TableDataModule(
        root,
        cache_dir=cache_dir,
        num_folds=2,
        multi_rater=True,
        batch_size=4,
        samples_per_epoch=4,
        augment={"flip": 1.0},
        patch_size=(24, 24),
    )
    assert dm.rater_names() == ["a", "b"]
    batch = _patches(dm)
    assert batch["label_a"].shape == batch["label_b"].shape == (4, 1, 24, 24)
    assert batch["label_b"].dtype == torch.int64
    for img, lab_b in zip(batch["image"].numpy(), batch["label_b"].numpy(), strict=True):
        img, lab_b = np.flip(img, (-2, -1)), np.flip(lab_b, (-2, -1))
        cid, (y, x) = _find_crop(np.ascontiguousarray(img), dm)
        np.testing.assert_array_equal(lab_b[0], dm.case(cid).extras["label_b"][y : y + 24, x : x + 24])
    np.testing.assert_array_equal(batch["label_a"], batch["label"])  # annotator a is the default label
    assert "label_b" not in _patches(TableDataModule(root, cache_dir=cache_dir, num_folds=2, batch_size=2))
    val = next(iter(dm.val_dataloader()))
    case = dm.case(val["case_id"][0])
    assert val["label_b"].shape == (1, 1, 40, 48) and val["label_b"].dtype == torch.int64
    np.testing.assert_array_equal(val["label_b"][0, 0].numpy(), case.extras["label_b"])
    np.testing.assert_array_equal(val["label_a"][0, 0].numpy(), case.extras["label_a"])


def test_augmented_patches_equal_monai_with_its_metadata_tracking(monkeypatch):
    """The sampler runs MONAI's transforms without MetaTensor bookkeeping (for speed); the items
    must equal those of MONAI's default path, value for value and dtype for dtype."""
    import contextlib

    import datamodules.sampling as sampling

    every = {"flip": 0.5, "rot90": 0.5, "noise": 0.5, "scale_intensity": 0.5, "shift_intensity": 0.5}
    dm = create_datamodule(
        "synthetic_vessels", size=(48, 48), num_train=3, num_val=0, num_test=1, augment=every
    )
    dm.setup("fit")
    ds = dm.train_dataloader().dataset
    fast = [ds[(2, i)] for i in range(24)]
    monkeypatch.setattr(sampling, "_plain_tensors", contextlib.nullcontext)
    reference = [ds[(2, i)] for i in range(24)]
    for a, b in zip(fast, reference, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert type(a[key]) is torch.Tensor and a[key].dtype == b[key].dtype
            assert torch.equal(a[key], b[key].as_subclass(torch.Tensor))
