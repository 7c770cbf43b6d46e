"""Deep supervision: every deeply supervised model trains its side outputs on the run's own loss.

The registry says which models are deeply supervised (``register_model(deep_supervision=...)``),
so a model added with side outputs is covered here without edits. The checks go through
``SegmentationModule.training_loss``, the loss the trainer minimises.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from models import SegmentationModule, create_loss, list_models, model_entry
from models.deep_supervision import (
    DeepSupervision,
    constant_weights,
    halving_weights,
    recursive_weights,
    resize_labels,
)
from tests.models.zoo_checks import small_model

_SHAPE = {2: (32, 32), 3: (32, 32, 8)}
_KNOWN = {
    "stu_net",
    "rrwnet",
    "h_denseunet",
    "basnet",
    "msga_net",
    # nnU-Net's U-Nets and the hybrids on their backbone: nnU-Net's own deep supervision
    "nnunet_plain",
    "nnunet_resenc",
    "umamba_bot_resenc",
    "umamba_enc_resenc",
    "xlstm_bot_resenc",
    "xlstm_enc_resenc",
}


def _deeply_supervised() -> list[Any]:
    names = [n for n in list_models() if model_entry(n).meta["deep_supervision"] is not None]
    return [pytest.param(n, min(model_entry(n).meta["dims"]), id=n) for n in names]


class SpyLoss(nn.Module):
    """A loss that records what it is called on; call ``i`` returns ``2**i`` (times 0 + the logits'
    sum, for a graph), so the total tells which calls were counted with which weights."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls.append((logits, target))
        return logits.sum() * 0.0 + 2.0 ** (len(self.calls) - 1)


def _train_step(
    name: str, dims: int, loss: nn.Module
) -> tuple[nn.Module, dict[str, Any], dict, torch.Tensor]:
    """The small ``name`` in training mode, one batch, its output and ``training_loss`` with ``loss``."""
    torch.manual_seed(0)
    shape = _SHAPE[dims]
    fixed = {"img_size": shape} if model_entry(name).meta["fixed_input_size"] else {}
    net = small_model(name, dims, **fixed).train()
    batch = {"image": torch.randn(1, 1, *shape), "label": (torch.rand(1, 1, *shape) > 0.7).long()}
    seen: dict[str, Any] = {}
    net.register_forward_hook(lambda _m, _a, out: seen.update(out=out))
    module = SegmentationModule(net, loss, num_classes=2, roi_size=shape)
    total = module.training_loss(batch)
    return net, batch, seen["out"], total


def test_the_known_deeply_supervised_models_are_registered_as_such() -> None:
    assert {n for n in list_models() if model_entry(n).meta["deep_supervision"] is not None} == _KNOWN


@pytest.mark.parametrize(("name", "dims"), _deeply_supervised())
def test_side_outputs_train_on_the_configured_loss(name: str, dims: int) -> None:
    spy = SpyLoss()
    net, batch, out, total = _train_step(name, dims, spy)
    aux = out["aux"]
    weights = model_entry(name).meta["deep_supervision"].weights(len(aux))
    scored = [out["logits"]] + [a for w, a in zip(weights, aux) if w]
    # the configured loss saw the final logits and every side output of nonzero weight, in order
    assert len(spy.calls) == len(scored)
    assert all(logits is side for (logits, _), side in zip(spy.calls, scored))
    for (logits, target), expected in zip(spy.calls, [batch["label"]] * len(scored)):
        assert torch.equal(target, resize_labels(expected, logits.shape[2:]))  # labels at the side's size
    # ... with the registered weights, and no other loss term scored the side outputs
    own = net.aux_loss(out, batch) if hasattr(net, "aux_loss") else 0.0
    expected = sum(w * 2.0**i for i, w in enumerate([1.0, *[w for w in weights if w]])) + own
    torch.testing.assert_close(total, torch.as_tensor(expected, dtype=total.dtype))
    if hasattr(net, "aux_loss"):  # the net's own terms do not read the side outputs
        moved = {**out, "aux": [-a for a in aux]}  # other side outputs, other softmax
        torch.testing.assert_close(net.aux_loss(moved, batch), net.aux_loss(out, batch))


@pytest.mark.parametrize(("name", "dims"), _deeply_supervised())
def test_a_dice_cldice_run_trains_the_side_outputs_on_dice_cldice(name: str, dims: int) -> None:
    """The bug this fixed: STU-Net's side heads trained on Dice + CE whatever the run's loss."""
    loss = create_loss("dice+cldice")
    net, batch, out, total = _train_step(name, dims, loss)
    weights = model_entry(name).meta["deep_supervision"].weights(len(out["aux"]))
    label = batch["label"]
    expected = loss(out["logits"], label)
    for w, side in zip(weights, out["aux"]):
        if w:
            expected = expected + w * loss(side, resize_labels(label, side.shape[2:]))
    if hasattr(net, "aux_loss"):
        expected = expected + net.aux_loss(out, batch)
    torch.testing.assert_close(total, expected)


def test_without_side_outputs_only_the_logits_are_scored() -> None:
    spec = DeepSupervision(constant_weights(1.0))
    logits = torch.randn(1, 2, 8, 8)
    label = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    ce = create_loss("ce")
    torch.testing.assert_close(spec.loss(ce, logits, label), ce(logits, label))
    torch.testing.assert_close(spec.loss(ce, {"logits": logits}, label), ce(logits, label))


def test_weight_schemes() -> None:
    assert halving_weights(4) == (0.5, 0.25, 0.125, 0.0)  # nnU-Net: the coarsest head has weight 0
    assert halving_weights(0) == ()
    k = 4  # RRWNet: (Z / K) * (1, 1/Z, 2/Z, 3/Z), Z = K (K + 1) / 2
    assert recursive_weights(k) == pytest.approx((2.5, 0.25, 0.5, 0.75))
    assert constant_weights(0.5)(3) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="2 weights for 3 side outputs"):
        DeepSupervision(lambda n: (1.0, 1.0)).loss(
            create_loss("ce"), _three_sides(), torch.zeros(1, 1, 4, 4).long()
        )


def _three_sides() -> dict[str, Any]:
    return {"logits": torch.randn(1, 2, 4, 4), "aux": [torch.randn(1, 2, 4, 4) for _ in range(3)]}


def test_labels_are_downsampled_by_nearest_neighbour() -> None:
    label = torch.arange(16).view(1, 1, 4, 4)
    assert resize_labels(label, (4, 4)) is label
    assert resize_labels(label, (2, 2)).tolist() == [[[[0, 2], [8, 10]]]]


def _not_deeply_supervised() -> list[Any]:
    names = [n for n in list_models() if model_entry(n).meta["deep_supervision"] is None]
    return [pytest.param(n, min(model_entry(n).meta["dims"]), id=n) for n in names]


@pytest.mark.parametrize(("name", "dims"), _not_deeply_supervised())
def test_a_model_without_deep_supervision_is_scored_on_its_logits_once(name: str, dims: int) -> None:
    """The bug this fixed: MONAI's DynUNet (resenc_unet) keeps a ``deep_supervision`` bool of its
    own, which the loss read as segbench's registration and failed on ('bool' has no 'loss')."""
    spy = SpyLoss()
    net, batch, out, total = _train_step(name, dims, spy)
    logits = out["logits"] if isinstance(out, dict) else out
    assert len(spy.calls) == 1 and spy.calls[0][0] is logits
    own = net.aux_loss(out, batch) if hasattr(net, "aux_loss") else 0.0
    torch.testing.assert_close(total, torch.as_tensor(1.0 + own, dtype=total.dtype))
