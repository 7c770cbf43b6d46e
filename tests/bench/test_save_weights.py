"""Kept weights: every registered model's network, as built (nnU-Net's 3D nets in channels-last),
is written by ``save_weights`` (the runner's) and read back by ``load_weights`` (predict's, export's)
into a fresh build of the same model (same layout) with every tensor equal."""

from __future__ import annotations

import pytest
import torch

from bench.records.weights import load_weights, save_weights
from models import list_models, model_entry
from tests.models.zoo_checks import small_model


def _cases() -> list[object]:
    out = [
        pytest.param("nnunet_plain", 3, id="nnunet_plain-3d"),
        pytest.param("nnunet_resenc", 3, id="nnunet_resenc-3d"),
    ]
    out += [pytest.param(n, min(model_entry(n).meta["dims"]), id=n) for n in list_models()]
    return out


@pytest.mark.parametrize(("name", "dims"), _cases())
def test_kept_weights_read_back_equal(name: str, dims: int, tmp_path) -> None:
    torch.manual_seed(0)
    net = small_model(name, dims)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / "model.safetensors"
    save_weights(net, path, metadata={"run_id": "x", "format": "pt"})
    torch.manual_seed(1)
    fresh = small_model(name, dims)
    load_weights(fresh, path)
    after = fresh.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k


def test_a_3d_nnunet_run_keeps_its_model_and_predict_reloads_it(tmp_path) -> None:
    """The runner end to end: a 2-step run of nnU-Net's 3D plain U-Net (channels-last) is done, keeps
    its weights, and the predict path loads them into the network its config builds."""
    from bench.config import sweep_from_dict
    from bench.evaluate.predict import find_model, load_model
    from bench.run import run_sweep
    from tests.conftest import TINY_3D_DATASET, tiny_sweep_dict

    sweep = tiny_sweep_dict(
        datasets=[dict(TINY_3D_DATASET)],
        models=[{"name": "nnunet_plain", "preset": "small", "plan": "hippocampus"}],
        data={"batch_size": 1, "patch_size": [16, 16, 16], "samples_per_epoch": 2},
        eval={"sw_batch_size": 1, "betti_patch": 16},
    )
    (record,) = run_sweep(sweep_from_dict(sweep), tmp_path, progress=False)
    assert record.done, record.error
    assert record.weights and (tmp_path / record.weights["file"]).is_file()
    loaded = load_model(find_model(record.run_id, tmp_path))
    assert loaded is not None
