"""Multi-scale guided attention net (models/msga_net.py): runs, learns, and has the paper's parts."""

from __future__ import annotations

import pytest
import torch

import models.msga_net  # noqa: F401  (registers)
from models import SegmentationModule, count_parameters, create_loss, create_model
from models.deep_supervision import supervised_loss
from models.msga_net import ChannelAttention, PositionAttention
from tests.models.zoo_checks import SMALL_INPUTS, assert_gradients, small_model, train_dice, vessel_sample

NAME = "msga_net"


@pytest.mark.parametrize(("spatial_dims", "batch", "shape"), SMALL_INPUTS)
def test_forward_backward_small(spatial_dims: int, batch: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = small_model(NAME, spatial_dims)
    for m in net.modules():  # γ starts at 0 (identity), which blocks the query/key gradients
        if isinstance(m, PositionAttention | ChannelAttention):
            m.gamma.data.fill_(0.1)
    out = net(torch.randn(batch, 1, *shape))
    assert out["logits"].shape == (batch, 2, *shape)
    assert len(out["aux"]) == 8 and all(p.shape == out["logits"].shape for p in out["aux"])
    label = torch.randint(0, 2, (batch, 1, *shape))
    square = supervised_loss(net, lambda logits, _: logits.square().mean(), out, label)  # + side outputs
    (square + net.aux_loss(out, {"label": label})).backward()
    # key.bias adds q·b to every key of a softmax row: it cancels exactly
    assert_gradients(net, skip=lambda name: name.endswith("key.bias"), nonzero=True)


@pytest.mark.slow
def test_overfits_one_sample() -> None:
    # Predictions are made at stride 4 and upsampled bilinearly, which caps training Dice on the
    # 1-pixel vessels of the 32×32 sample (as for DeepLabV3+); shown at 4× zoom it learns them.
    torch.manual_seed(0)
    assert train_dice(small_model(NAME, 2), *vessel_sample(zoom=4), steps=20, lr=1e-2) > 0.9


def test_logits_are_the_mean_of_the_refined_predictions() -> None:
    torch.manual_seed(0)
    net = small_model(NAME, 2).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 32, 32))
    torch.testing.assert_close(out["logits"], torch.stack(out["aux"][4:]).mean(0))


def test_training_loss_is_the_papers_weighted_sum() -> None:
    # with loss: ce, CE on the segmentation and on each side prediction + 0.25 Σ ||e1 - e2||²
    # + 0.1 Σ ||rec - in||² (MSE means), by hand
    torch.manual_seed(0)
    net = small_model(NAME, 2).eval()
    x, label = torch.randn(1, 1, 32, 32), torch.randint(0, 2, (1, 1, 32, 32))
    with torch.no_grad():
        out = net(x)
        training = SegmentationModule(net, create_loss("ce"), num_classes=2, roi_size=(32, 32))
        total = float(training.training_loss({"image": x, "label": label}))
    ce = 0.0
    for p in [out["logits"], *out["aux"]]:
        logp = p.log_softmax(1)
        ce += float(-logp.gather(1, label).mean())
    sem = sum(float(((a - b) ** 2).mean()) for a, b in zip(*out["semantic"]))
    rec = sum(float(((i - o) ** 2).mean()) for i, o in out["reconstruction"])
    assert len(out["reconstruction"]) == 8 and len(out["semantic"][0]) == 4
    expected = ce + 0.25 * sem + 0.1 * rec
    assert abs(total - expected) < 1e-4 * max(1.0, expected)


def test_position_and_channel_attention_match_their_formulas() -> None:
    torch.manual_seed(0)
    pam = PositionAttention(2, 16)
    pam.gamma.data.fill_(0.5)
    x = torch.randn(2, 16, 3, 5)
    flat = x.flatten(2)
    q = torch.einsum("oc,bcn->bon", pam.query.weight[:, :, 0, 0], flat) + pam.query.bias[:, None]
    k = torch.einsum("oc,bcn->bon", pam.key.weight[:, :, 0, 0], flat) + pam.key.bias[:, None]
    v = torch.einsum("oc,bcn->bon", pam.value.weight[:, :, 0, 0], flat) + pam.value.bias[:, None]
    s = torch.softmax(torch.einsum("bci,bcj->bij", q, k), dim=-1)  # s[i, j]: position i reads j
    expected = flat + 0.5 * torch.einsum("bcj,bij->bci", v, s)
    torch.testing.assert_close(pam(x).flatten(2), expected)
    cam = ChannelAttention()
    cam.gamma.data.fill_(0.5)
    energy = torch.einsum("bin,bjn->bij", flat, flat)
    a = torch.softmax(energy.max(-1, keepdim=True).values - energy, dim=-1)
    torch.testing.assert_close(cam(x).flatten(2), flat + 0.5 * torch.einsum("bij,bjn->bin", a, flat))


def test_second_step_is_guided_by_the_first() -> None:
    # step 2 of scale s receives [F_s, A_s * F_MS]: changing the step-1 attention changes step 2
    torch.manual_seed(0)
    net = small_model(NAME, 2).eval()
    seen: list[torch.Tensor] = []
    hook = net.steps[1][0].register_forward_hook(lambda m, a, o: seen.append(a[0]))
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        net(x)
        torch.nn.init.normal_(net.steps[0][0].out.weight)
        net(x)
    hook.remove()
    c = 8
    torch.testing.assert_close(seen[0][:, :c], seen[1][:, :c])  # F_s unchanged
    assert not torch.allclose(seen[0][:, c:], seen[1][:, c:], rtol=1e-3, atol=0)  # A_s * F_MS changed


def test_paper_size_encoder_is_resnext101_32x4d() -> None:
    with torch.device("meta"):  # count and inspect without allocating the weights
        net = create_model(NAME, spatial_dims=2, in_channels=3, out_channels=5)
    # timm's resnext101_32x4d: 44.18 M with its 1000-class fc (2,049,000); the grouped encoder
    # itself is checked against torchvision's ResNeXt counts in test_deeplabv3plus.py
    assert count_parameters(net.encoder) == 42_128_704
    assert [len(s) for s in net.encoder.stages] == [3, 4, 23, 3]
    assert net.encoder.stages[0][0].body[1].conv.groups == 32
    assert net.encoder.strides == [4, 8, 16, 32]
    assert [r.conv.out_channels for r in net.reduce] == [64] * 4
    assert len(net.steps) == 2 and all(len(s) == 4 for s in net.steps)
