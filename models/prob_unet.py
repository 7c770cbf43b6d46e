"""Probabilistic U-Net, as PULASki trains it (Kohl et al. 2018; Chatterjee et al. 2023).

Kohl et al., "A Probabilistic U-Net for Segmentation of Ambiguous Images", NeurIPS 2018
(https://arxiv.org/abs/1806.05034): a U-Net whose last feature map is concatenated with a latent
sample ``z`` (broadcast over space) and mapped to logits by three 1x1 convolutions; a prior net
gives ``p(z | x)``, a posterior net ``q(z | x, y)`` from the image and a one-hot label, both
axis-aligned Gaussians. Training decodes posterior samples and adds ``beta * KL(q || p)``.

Sizes follow PULASki's network (https://arxiv.org/abs/2312.15686, its ``ProbabilisticSegmentationNet``:
5 levels of ``24 * 2^d`` feature maps, latent size 3, instance norm, leaky ReLU). Building
blocks are MONAI's: ``BasicUNet`` (its final 1x1 convolution removed, so its last decoder
activations feed the latent injection) and ``TwoConv`` stages with average pooling for the prior
and posterior encoders.

Calling convention:

- ``net(x)`` in eval mode: logits ``(B, C, *spatial)`` decoded at the prior mean (PULASki's
  inference); ``net.sample(x, n)`` gives ``n`` prior samples ``(B, n, C, *spatial)``.
- ``net(x, target)`` in training mode, ``target (B, 1, *spatial)`` or every rater's labels
  ``(B, R, *spatial)`` int64: one rater (drawn per batch) conditions the posterior, ``S``
  posterior samples are decoded (``num_samples``, default ``R``), and the result is
  ``{"logits": (B, C, *sp) first sample, "samples": (B, S, C, *sp), "kl": scalar}``.
- ``net(x)`` in training mode without a target decodes one prior sample and has ``kl = 0``:
  the network then trains as a plain U-Net with noise, not as a conditional VAE.
- ``aux_loss(outputs, batch)`` returns ``beta * kl`` for the SegmentationModule to add.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks import one_hot
from monai.networks.layers.factories import Conv, Pool
from monai.networks.nets import BasicUNet
from monai.networks.nets.basic_unet import TwoConv
from torch import nn
from torch.distributions import Normal, kl_divergence

from models.registry import register_model

_ACT = ("LeakyReLU", {"negative_slope": 0.01, "inplace": True})
_NORM = ("instance", {"affine": True})


class GaussianEncoder(nn.Module):
    """Conv encoder -> global average -> axis-aligned Gaussian over a ``latent_size`` latent.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (image, or image + one-hot label for the posterior).
        features: channels per level; levels after the first start with 2x average pooling.
        latent_size: dimension of ``z``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, features: Sequence[int], latent_size: int
    ) -> None:
        super().__init__()
        pool = Pool["avg", spatial_dims]
        stages: list[nn.Module] = []
        for d, f in enumerate(features):
            block = TwoConv(spatial_dims, in_channels if d == 0 else features[d - 1], f, _ACT, _NORM, True)
            stages.append(block if d == 0 else nn.Sequential(pool(kernel_size=2), block))
        self.stages = nn.Sequential(*stages)
        self.head = Conv["conv", spatial_dims](features[-1], 2 * latent_size, kernel_size=1)

    def forward(self, x: torch.Tensor) -> Normal:
        """``x (B, in_channels, *spatial)`` -> ``Normal`` with ``(B, latent_size)`` mean and scale."""
        h = self.head(self.stages(x).mean(dim=tuple(range(2, x.dim())), keepdim=True)).flatten(1)
        mean, log_var = h.chunk(2, dim=1)
        return Normal(mean, log_var.mul(0.5).exp())


@register_model(
    "prob_unet",
    family="cnn",
    dims=(2, 3),
    description="Probabilistic U-Net (prior/posterior latent, KL) as trained by PULASki",
    paper="https://arxiv.org/abs/1806.05034",
    small={"features": (4, 8, 16, 32, 64)},
    options="features latent_size num_1x1 beta num_samples",
)
class ProbabilisticUNet(nn.Module):
    """Probabilistic U-Net at PULASki's size; see the module docstring for the calling convention.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: classes ``C`` (the posterior sees the label one-hot over ``C``).
        features: channels of the 5 U-Net levels (the decoder's last level uses the first).
        latent_size: dimension of ``z``.
        num_1x1: 1x1 convolutions after the latent injection.
        beta: weight of the KL term in :meth:`aux_loss`.
        num_samples: posterior samples decoded in training; None uses the number of raters.

    Attributes:
        takes_target: True: in training the SegmentationModule calls ``net(image, target)``.
    """

    takes_target = True

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        features: Sequence[int] = (24, 48, 96, 192, 384),
        latent_size: int = 3,
        num_1x1: int = 3,
        beta: float = 1.0,
        num_samples: int | None = None,
    ) -> None:
        super().__init__()
        if len(features) != 5:
            raise ValueError(f"prob_unet: features must give 5 levels, got {tuple(features)}")
        if num_1x1 < 1 or latent_size < 1:
            raise ValueError(f"prob_unet: num_1x1 and latent_size must be >= 1, got {num_1x1}, {latent_size}")
        features = tuple(int(f) for f in features)
        self.num_classes = out_channels
        self.beta = beta
        self.num_samples = num_samples
        self.unet = BasicUNet(
            spatial_dims, in_channels, out_channels, features=(*features, features[0]), act=_ACT, norm=_NORM
        )
        self.unet.final_conv = nn.Identity()  # its last decoder activations feed the injection
        self.prior = GaussianEncoder(spatial_dims, in_channels, features, latent_size)
        self.posterior = GaussianEncoder(spatial_dims, in_channels + out_channels, features, latent_size)
        conv = Conv["conv", spatial_dims]
        width = features[0]
        layers: list[nn.Module] = []
        for i in range(num_1x1):
            last = i == num_1x1 - 1
            layers.append(conv(width + latent_size if i == 0 else width, out_channels if last else width, 1))
            if not last:
                layers.append(nn.LeakyReLU(0.01, inplace=True))
        self.fcomb = nn.Sequential(*layers)

    def _decode(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``features (B, F, *sp)``, ``z (B, S, L)`` -> logits ``(B, S, C, *sp)``."""
        b, s = z.shape[:2]
        spatial = features.shape[2:]
        feat = features[:, None].expand(b, s, *features.shape[1:])
        zmap = z.reshape(b, s, -1, *([1] * len(spatial))).expand(b, s, z.shape[-1], *spatial)
        logits = self.fcomb(torch.cat([feat, zmap], dim=2).flatten(0, 1))
        return logits.reshape(b, s, *logits.shape[1:])

    def sample(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """``num_samples`` prior samples ``(B, num_samples, C, *spatial)`` for ``x (B, Cin, *spatial)``."""
        prior = self.prior(x)
        z = prior.rsample((num_samples,)).transpose(0, 1)
        return self._decode(self.unet(x), z)

    def forward(
        self, x: torch.Tensor, target: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """See the module docstring. ``x (B, in_channels, *spatial)``."""
        features = self.unet(x)
        prior = self.prior(x)
        if not self.training:
            return self._decode(features, prior.loc[:, None])[:, 0]
        if target is None:
            samples = self._decode(features, prior.rsample()[:, None])
            return {"logits": samples[:, 0], "samples": samples, "kl": x.new_zeros(())}
        if target.dim() != x.dim() or target.shape[0] != x.shape[0] or target.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"prob_unet: target must be (B, R, *spatial) labels for x {tuple(x.shape)}, "
                f"got {tuple(target.shape)}"
            )
        rater = int(torch.randint(target.shape[1], (1,)))  # one rater per batch, as PULASki draws
        label = one_hot(target[:, rater : rater + 1].long(), num_classes=self.num_classes, dim=1)
        posterior = self.posterior(torch.cat([x, label.to(x.dtype)], dim=1))
        n = self.num_samples or target.shape[1]
        z = posterior.rsample((n,)).transpose(0, 1)  # (B, S, L)
        samples = self._decode(features, z)
        kl = kl_divergence(posterior, prior).sum(dim=1).mean()
        return {"logits": samples[:, 0], "samples": samples, "kl": kl}

    def aux_loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """``beta * KL(q(z | x, y) || p(z | x))`` (0 when ``outputs`` holds no KL)."""
        if isinstance(outputs, dict) and "kl" in outputs:
            return self.beta * outputs["kl"]
        return torch.zeros(())
