"""Probabilistic U-Net: shapes and gradients, the KL by hand, latent injection, overfitting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models.prob_unet  # noqa: F401  (registers prob_unet)
from models import count_parameters, create_loss, create_model, model_entry
from tests.models.zoo_checks import train_dice, vessel_sample

_SMALL = model_entry("prob_unet").meta["small"]


def _net(spatial_dims: int, **kw: object) -> nn.Module:
    torch.manual_seed(0)
    return create_model(
        "prob_unet", spatial_dims=spatial_dims, in_channels=1, out_channels=2, **{**_SMALL, **kw}
    )


def _forward_backward(spatial_dims: int, shape: tuple[int, ...], batch: int) -> None:
    net = _net(spatial_dims)
    x = torch.randn(batch, 1, *shape)
    raters = torch.randint(0, 2, (batch, 3, *shape))
    out = net(x, raters)
    assert out["logits"].shape == (batch, 2, *shape)
    assert out["samples"].shape == (batch, 3, 2, *shape)  # one sample per rater by default
    assert torch.equal(out["logits"], out["samples"][:, 0])
    assert out["kl"].dim() == 0 and out["kl"] >= 0
    loss = create_loss("pulaski_hausdorff")(out["samples"], raters) + net.aux_loss(out, {})
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing  # U-Net, fcomb, posterior (rsample) and prior (KL) all learn
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (batch, 2, *shape)


def test_forward_backward_2d() -> None:
    import models.losses.pulaski  # noqa: F401

    _forward_backward(2, (32, 32), batch=2)


def test_forward_backward_3d() -> None:
    import models.losses.pulaski  # noqa: F401

    _forward_backward(3, (32, 32, 32), batch=1)  # 4 poolings: 16^3 would leave 1 voxel to normalise


def test_kl_is_the_closed_form_between_diagonal_gaussians() -> None:
    net = _net(2)
    x = torch.randn(2, 1, 32, 32)
    label = torch.randint(0, 2, (2, 1, 32, 32))
    out = net(x, label)  # one rater: the posterior sees this label
    prior = net.prior(x)
    onehot = torch.cat([(label == 0).float(), (label == 1).float()], dim=1)
    post = net.posterior(torch.cat([x, onehot], dim=1))
    mq, sq, mp, sp = post.loc, post.scale, prior.loc, prior.scale
    kl = (torch.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(1).mean()
    torch.testing.assert_close(out["kl"], kl)
    assert net.aux_loss(out, {}).item() == pytest.approx(kl.item())  # beta = 1
    net.beta = 10.0
    assert net.aux_loss(out, {}).item() == pytest.approx(10 * kl.item())


def test_latent_injection_and_eval_at_prior_mean() -> None:
    net = _net(2)
    latent = 3
    first = net.fcomb[0]
    assert first.in_channels == _SMALL["features"][0] + latent and first.kernel_size == (1, 1)
    assert sum(isinstance(m, nn.Conv2d) for m in net.fcomb) == 3  # three 1x1 convolutions
    assert net.posterior.stages[0].conv_0.conv.in_channels == 1 + 2  # image + one-hot label
    x = torch.randn(1, 1, 32, 32)
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
        samples = net.sample(x, 4)
        at_mean = net._decode(net.unet(x), net.prior(x).loc[:, None])[:, 0]
    assert torch.equal(a, b) and torch.equal(a, at_mean)  # deterministic: decoded at the prior mean
    assert samples.shape == (1, 4, 2, 32, 32)
    assert not torch.equal(samples[:, 0], samples[:, 1])  # the latent changes the segmentation


def test_training_without_target_uses_the_prior() -> None:
    net = _net(2)
    assert net.takes_target  # tells the SegmentationModule to pass the labels in training
    out = net(torch.randn(2, 1, 32, 32))
    assert out["samples"].shape[1] == 1 and out["kl"].item() == 0.0
    with pytest.raises(ValueError, match="target must be"):
        net(torch.randn(2, 1, 32, 32), torch.zeros(2, 1, 16, 16, dtype=torch.long))


def test_paper_size_builds_with_pulaskis_widths() -> None:
    for spatial_dims, params in ((2, 9_693_422), (3, 28_640_222)):
        net = create_model("prob_unet", spatial_dims=spatial_dims, in_channels=1, out_channels=2)
        widths = [
            s.conv_0.conv.out_channels if i == 0 else s[1].conv_0.conv.out_channels
            for i, s in enumerate(net.prior.stages)
        ]
        assert widths == [24, 48, 96, 192, 384]
        assert net.prior.head.out_channels == 2 * 3  # mean and log-variance of a 3-d latent
        assert count_parameters(net) == params  # recorded in docs/models_zoo_c.md


def test_overfits_one_sample() -> None:
    torch.manual_seed(0)
    x, y = vessel_sample()
    net = _net(2).train()  # the registered small size; it takes the label as net(x, y) in training
    # Dice 0 at step 20, 0.92 at step 30, 0.98 at step 40; predicted in eval mode: the prior mean, no label
    dice = train_dice(net, x, y, steps=45, lr=1e-2, predict_in_eval=True)
    assert dice > 0.9, f"training Dice {dice:.3f}"
