"""Training options that reach every model through the runner: SAM, 2.5D input on 3D data and a
pretrained encoder from a local checkpoint."""

from __future__ import annotations

import pytest
import torch

from bench.config import ConfigError, sweep_from_dict
from bench.run import check_run, resolve_run, run_sweep
from models import create_model
from tests.conftest import TINY_3D_DATASET, tiny_sweep_dict


def test_sam_runs_the_step_budget(tmp_path) -> None:
    sweep = tiny_sweep_dict(
        optim={"optimizer": "sam", "sam_rho": 0.05, "lr": 0.01},
        trainer={"max_steps": 3, "gradient_clip_val": 1.0},
    )
    (rec,) = run_sweep(sweep_from_dict(sweep), tmp_path, progress=False)
    assert rec["status"] == "done", rec.get("traceback")
    assert rec["steps"] == 3  # SAM's two passes count as one optimiser step


def test_a_2d_model_runs_on_3d_data_in_2p5d_mode(tmp_path) -> None:
    sweep = tiny_sweep_dict(
        datasets=[dict(TINY_3D_DATASET)],
        models=[{"name": "hybridgnet_dense", "input_mode": "2.5d", "context": 1}],
        data={"batch_size": 1, "patch_size": [16, 16, 16], "samples_per_epoch": 2},
        eval={"sw_batch_size": 1},
    )
    (rec,) = run_sweep(sweep_from_dict(sweep), tmp_path, progress=False)
    assert rec["status"] == "done", rec.get("traceback")
    assert "betti2_err" in rec["cases"][0]  # scored as a 3D case
    bad = sweep_from_dict(tiny_sweep_dict(models=[{"name": "unet", "input_mode": "2.5d"}])).expand()[0]
    with pytest.raises(ConfigError, match="2.5d needs a 2D model on a 3D dataset"):
        check_run(resolve_run(bad))


def test_pretrained_encoder_is_loaded_from_a_local_checkpoint(tmp_path) -> None:
    from safetensors.torch import save_file

    kw = {"channels": [4, 8]}
    source = create_model("unet", spatial_dims=2, in_channels=1, out_channels=2, **kw)
    path = tmp_path / "unet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    torch.manual_seed(123)
    net = create_model(
        "unet", spatial_dims=2, in_channels=1, out_channels=2, pretrained_encoder=str(path), **kw
    )
    for (k, a), b in zip(source.state_dict().items(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    missing = sweep_from_dict(
        tiny_sweep_dict(models=[{"name": "unet", "pretrained_encoder": str(tmp_path / "x")}])
    )
    with pytest.raises(ConfigError, match="pretrained_encoder .*: no such file"):
        check_run(resolve_run(missing.expand()[0]))
    with pytest.raises(ValueError, match="unet.safetensors"):
        create_model(
            "unet",
            spatial_dims=2,
            in_channels=1,
            out_channels=2,
            pretrained_encoder=str(path),
            channels=[4, 8, 16],
        )


def test_model_options_are_checked_against_the_registration() -> None:
    """``hybridgnet``'s builder took ``**kwargs``, which switched the signature check off; the
    options declared at registration are checked whatever the builder's signature."""
    typo = sweep_from_dict(tiny_sweep_dict(models=[{"name": "hybridgnet", "nodes_per_contur": 8}]))
    with pytest.raises(ConfigError, match="model 'hybridgnet' has no option 'nodes_per_contur'; accepted: "):
        check_run(resolve_run(typo.expand()[0]))
    fine = sweep_from_dict(tiny_sweep_dict(models=[{"name": "hybridgnet", "nodes_per_contour": 8}]))
    check_run(resolve_run(fine.expand()[0]))
