"""The nnU-Net training recipe as a config preset (``recipe: nnunet``) and its MONAI augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.config import ConfigError, sweep_from_dict
from bench.run import build_run
from datamodules.sampling import build_augmentation
from tests.conftest import tiny_sweep_dict

NNUNET_AUGMENT = ("rotate_scale", "noise", "blur", "brightness", "contrast", "low_res", "gamma", "flip")


def test_the_recipe_is_nnunets_settings() -> None:
    cfg = sweep_from_dict({"recipe": "nnunet"}).expand()[0]
    # nnU-Net v2's nnUNetTrainer, typed here from its source: SGD(lr=1e-2, momentum=0.99,
    # nesterov=True, weight_decay=3e-5), PolyLRScheduler (exponent 0.9), 1000 epochs of 250
    # iterations, batch 2 (3d_fullres), gradient norm clipped at 12, 33 % foreground oversampling
    o = cfg.optim
    assert (o.optimizer, o.lr, o.momentum, o.weight_decay, o.scheduler) == ("sgd", 0.01, 0.99, 3e-5, "poly")
    assert cfg.trainer.max_steps == 1000 * 250 and cfg.trainer.gradient_clip_val == 12
    assert cfg.data.batch_size == 2 and cfg.data.samples_per_epoch // cfg.data.batch_size == 250
    assert cfg.data.fg_oversample == 0.33
    assert set(NNUNET_AUGMENT) <= set(cfg.data.augment)


def test_the_sweeps_own_fields_win_and_an_unknown_recipe_is_one_line() -> None:
    sweep = {"recipe": "nnunet", "optim": {"lr": 0.1}, "data": {"augment": {"rotate_scale": 0.0}}}
    cfg = sweep_from_dict(sweep).expand()[0]
    assert cfg.optim.lr == 0.1 and cfg.optim.optimizer == "sgd"  # merged field by field
    assert cfg.data.augment["rotate_scale"] == 0.0 and cfg.data.augment["flip"] == 0.5
    assert cfg.data.batch_size == 2
    with pytest.raises(ConfigError, match=r"^recipe: 'nnunet2' is not a recipe; recipes: nnunet$"):
        sweep_from_dict({"recipe": "nnunet2"})


def test_a_recipe_run_builds_nesterov_sgd_with_the_recipes_numbers(tmp_path) -> None:
    sweep = tiny_sweep_dict(recipe="nnunet", trainer={"max_steps": 2, "log_every_n_steps": 1})
    sweep["data"] = {"batch_size": 2, "patch_size": [32, 32], "samples_per_epoch": 4}
    run = build_run(sweep_from_dict(sweep).expand()[0], tmp_path, progress=False)
    opt = run.module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt[0][0] if isinstance(opt, tuple) else opt
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD) and group["nesterov"] and group["momentum"] == 0.99
    assert group["weight_decay"] == 3e-5 and group["initial_lr"] == 0.01
    assert run.resolved.trainer.gradient_clip_val == 12


@pytest.mark.parametrize(("dims", "shape"), [(2, (32, 32)), (3, (16, 16, 16))])
def test_the_nnunet_augmentations_move_labels_as_labels(dims: int, shape: tuple[int, ...]) -> None:
    label = np.zeros(shape, np.int64)
    label[tuple(slice(4, 12) for _ in shape)] = 2
    image = torch.randn(1, *shape)
    item = {"image": image, "label": torch.from_numpy(label)[None]}
    aug = build_augmentation(dict.fromkeys(NNUNET_AUGMENT, 1.0), dims)
    aug.set_random_state(0)
    out = aug({k: v.clone() for k, v in item.items()})
    values = set(torch.unique(torch.as_tensor(out["label"])).long().tolist())
    assert values <= {0, 2} and 2 in values  # nearest: no interpolated label values
    assert not torch.equal(torch.as_tensor(out["image"]), image)
    moved = torch.as_tensor(out["label"]).long()
    assert not torch.equal(moved, item["label"])  # rotated / scaled / flipped together with the image
    none = build_augmentation(dict.fromkeys(NNUNET_AUGMENT, 0.0), dims)
    assert none is None  # probability 0: nothing applied
