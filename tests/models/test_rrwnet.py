"""RRWNet: forward/backward, weights shared over refinement steps, RRLoss weights, size, overfit."""

from __future__ import annotations

import pytest
import torch

import models.rrwnet  # noqa: F401  (registers)
from models import count_parameters, create_loss, create_model, model_entry
from models.deep_supervision import supervised_loss
from tests.models.zoo_checks import assert_gradients, forward_backward, small_model, train_dice, vessel_sample

SMALL = model_entry("rrwnet").meta["small"]


def _official_unet_params(cin: int, cout: int, base: int) -> int:
    """Closed-form count of the official ``UNetModule`` (conv blocks, 2x2 up-convs, 1x1 head)."""

    def block(i: int, o: int) -> int:  # two 3x3 convs with bias
        return 9 * i * o + o + 9 * o * o + o

    f = [base * 2**j for j in range(5)]
    n = block(cin, f[0]) + sum(block(a, b) for a, b in zip(f[:-1], f[1:]))
    n += sum(4 * f[j + 1] * f[j] + f[j] + block(2 * f[j], f[j]) for j in range(4))
    return n + f[0] * cout + cout


@pytest.mark.parametrize(("spatial_dims", "shape", "batch"), [(2, (32, 32), 2), (3, (16, 16, 16), 1)])
def test_forward_backward_small(spatial_dims: int, shape: tuple[int, ...], batch: int) -> None:
    torch.manual_seed(0)
    net = small_model("rrwnet", spatial_dims).train()
    x, out = forward_backward(net, batch, shape, aux_label=True)
    assert len(out["aux"]) == SMALL["refine_steps"]  # base + intermediate refinements
    assert_gradients(net)
    with torch.no_grad():
        assert net.eval()(x).shape == (batch, 2, *shape)
        assert net(torch.randn(1, 1, *[s + 4 for s in shape])).shape[2:] == tuple(s + 4 for s in shape)


def test_refinement_steps_share_weights_and_see_only_maps() -> None:
    torch.manual_seed(0)
    net = small_model("rrwnet", 2, refine_steps=3).eval()
    calls: list[torch.Tensor] = []
    net.refiner.register_forward_hook(lambda _m, args, _out: calls.append(args[0]))
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        final = net(x)
        assert len(calls) == 3  # one module, called once per step
        assert all(c.shape[1] == 2 for c in calls)  # class maps only, not the image
        torch.testing.assert_close(calls[0], torch.softmax(net.base(x), 1))
        manual = net.base(x)
        for _ in range(3):
            manual = net.refiner(torch.softmax(manual, 1))
        torch.testing.assert_close(final, manual)
    # more steps add no parameters: the refinement weights are shared
    one, six = (small_model("rrwnet", 2, refine_steps=k) for k in (1, 6))
    assert count_parameters(one) == count_parameters(six)


def test_deep_supervision_is_the_paper_rrloss_rescaled() -> None:
    """RRLoss = L(base) + sum_i i L(r_i) / Z, the final r_K with weight 1 in segbench."""
    torch.manual_seed(0)
    k = 4
    net = small_model("rrwnet", 2, refine_steps=k).train()
    x, y = torch.randn(1, 1, 32, 32), (torch.rand(1, 1, 32, 32) > 0.5).long()
    out = net(x)
    ce = create_loss("ce")
    outs = [*out["aux"], out["logits"]]
    z = k * (k + 1) / 2
    paper = ce(outs[0], y) + sum(i * ce(r, y) for i, r in enumerate(outs[1:], start=1)) / z
    segbench = supervised_loss(net, ce, out, y)
    torch.testing.assert_close(segbench, paper * z / k)


def test_paper_size_parameter_count() -> None:
    with torch.device("meta"):
        net = create_model("rrwnet", spatial_dims=2, in_channels=3, out_channels=3)
    assert count_parameters(net.base) == _official_unet_params(3, 3, 64)  # 31.03 M
    # the official refiner outputs 2 maps (artery, vein); segbench refines all 3 class maps
    assert count_parameters(net.refiner) == _official_unet_params(3, 2, 64) + 64 + 1
    assert net.refine_steps == 6 and not any(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    x, y = vessel_sample()
    dice = train_dice(small_model("rrwnet", 2).train(), x, y, steps=45, lr=1e-2)
    assert dice > 0.9, f"training Dice {dice:.3f}"
