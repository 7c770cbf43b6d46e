"""nnU-Net's 3D conv nets run in channels-last (faster oneDNN backward on CPU) and compute what the
same weights compute in the default contiguous layout; nets with sequence mixers stay contiguous.

The reference is a float64 copy of the net in the default layout, so the check does not depend on
segbench's choice of layout.
"""

from __future__ import annotations

import copy

import pytest
import torch

from models import create_model

_CL3D = torch.channels_last_3d


def _net(name: str) -> torch.nn.Module:
    return create_model(
        name, spatial_dims=3, in_channels=1, out_channels=3, preset="small", plan="hippocampus"
    )


def _conv_weights(net: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv3d)]


def _loss_and_grads(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    net.zero_grad()
    out = net(x)
    logits = out["logits"] if isinstance(out, dict) else out
    logits.square().mean().backward()
    grads = {
        n: p.grad.double()
        for n, p in net.named_parameters()
        if n.endswith("conv.weight") and p.grad is not None
    }
    return logits.double(), grads


@pytest.mark.parametrize("name", ["nnunet_plain", "nnunet_resenc"])
def test_3d_net_is_channels_last_and_matches_a_float64_contiguous_copy(name: str) -> None:
    torch.manual_seed(0)
    net = _net(name).train()
    assert all(w.is_contiguous(memory_format=_CL3D) and w.shape[1] > 1 for w in _conv_weights(net)[1:])
    reference = copy.deepcopy(net).to(memory_format=torch.contiguous_format).double()
    assert all(w.is_contiguous() for w in _conv_weights(reference))
    x = torch.randn(2, 1, 40, 56, 40)
    logits, grads = _loss_and_grads(net, x)
    ref_logits, ref_grads = _loss_and_grads(reference, x.double())
    assert torch.allclose(logits, ref_logits, atol=1e-4, rtol=1e-4)
    assert grads.keys() == ref_grads.keys() and len(grads) > 4
    for n, g in grads.items():  # float32 against float64: ~3e-3 in either layout; a wrong kernel is O(1)
        assert (g - ref_grads[n]).norm() <= 2e-2 * ref_grads[n].norm(), n


def test_nets_with_sequence_mixers_and_2d_nets_stay_contiguous() -> None:
    mixed = create_model("umamba_bot_resenc", spatial_dims=3, in_channels=1, out_channels=2, preset="small")
    flat = create_model("nnunet_plain", spatial_dims=2, in_channels=1, out_channels=2, preset="small")
    for net in (mixed, flat):
        weights = [m.weight for m in net.modules() if isinstance(m, torch.nn.Conv3d | torch.nn.Conv2d)]
        assert weights and all(w.is_contiguous() for w in weights)
