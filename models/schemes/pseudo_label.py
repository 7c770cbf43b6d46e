"""``pseudo_label``: confident EMA-teacher pseudo-labels on unlabelled patches (Lee 2013; the
teacher as in Tarvainen & Valpola 2017), optional forward correction for symmetric label noise
(Patrini et al., CVPR 2017, https://arxiv.org/abs/1609.03683) and an optional adversarial term:
a discriminator on softmax maps, trained through a gradient-reversal layer (Ganin & Lempitsky
2015) to tell labelled from unlabelled predictions, so one optimiser trains both."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.layers import Conv
from torch import nn

from models.registry import register_scheme
from models.schemes.base import TeacherScheme
from models.schemes.functional import (
    confident_targets,
    forward_noise_correction,
    grad_reverse,
    masked_nll,
    output_logits,
)


class MapDiscriminator(nn.Module):
    """A small conv discriminator: softmax maps ``(B, C, *spatial)`` -> one logit per image ``(B,)``."""

    def __init__(self, num_classes: int, spatial_dims: int, features: int = 16) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.body = nn.Sequential(
            conv(num_classes, features, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            conv(features, features, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            conv(features, 1, 1),
        )

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """``probs (B, C, *spatial)`` -> ``(B,)`` logits (labelled = 1)."""
        return self.body(probs).flatten(1).mean(1)


@register_scheme(
    "pseudo_label",
    needs_unlabelled=True,
    options="weight threshold decay rampup noise_rate adv_weight",
    description="confident EMA-teacher pseudo-labels on unlabelled patches (+ noise correction, adversarial)",
    paper="https://arxiv.org/abs/1609.03683",
)
class PseudoLabelScheme(TeacherScheme):
    """Supervised loss + ``weight * ramp * CE(student(x_u), argmax teacher(x_u))`` on the voxels
    where the teacher's max softmax is at least ``threshold`` (+ ``adv_weight * BCE`` of the
    discriminator through gradient reversal).

    Args:
        weight: pseudo-label loss weight after the ramp-up.
        threshold: ``tau``, the teacher's confidence a voxel needs to be a target.
        decay: EMA decay of the teacher.
        rampup: ramp-up length, fraction of the run's steps.
        noise_rate: ``eps`` of symmetric label noise assumed in the pseudo-labels; the student's
            probabilities are corrected forward, ``(1 - eps) p + eps / C``, before the NLL.
        adv_weight: weight of the adversarial term (0: no discriminator is built).
    """

    def __init__(
        self,
        weight: float = 1.0,
        threshold: float = 0.9,
        decay: float = 0.99,
        rampup: float = 0.4,
        noise_rate: float = 0.0,
        adv_weight: float = 0.0,
    ) -> None:
        super().__init__(decay=decay)
        if not 0.0 <= noise_rate < 1.0:
            raise ValueError(f"noise_rate must be in [0, 1), got {noise_rate}")
        self.weight = float(weight)
        self.threshold = float(threshold)
        self.rampup = float(rampup)
        self.noise_rate = float(noise_rate)
        self.adv_weight = float(adv_weight)
        self.discriminator: MapDiscriminator | None = None

    def attach(
        self, net: nn.Module, *, num_classes: int | None = None, spatial_dims: int | None = None
    ) -> None:
        """The teacher copy and, with ``adv_weight > 0``, the discriminator (a scheme parameter)."""
        super().attach(net)
        if self.adv_weight > 0:
            if num_classes is None or spatial_dims is None:
                raise ValueError("pseudo_label with adv_weight > 0 needs num_classes and spatial_dims")
            self.discriminator = MapDiscriminator(num_classes, spatial_dims)

    def pseudo_loss(self, logits_u: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
        """Masked NLL of the (noise-corrected) student probabilities against confident targets."""
        target, mask = confident_targets(teacher_probs, self.threshold)
        probs = torch.softmax(logits_u, dim=1)
        if self.noise_rate > 0:
            log_probs = torch.log(forward_noise_correction(probs, self.noise_rate))
        else:
            log_probs = torch.log_softmax(logits_u, dim=1)
        return masked_nll(log_probs, target, mask) + 0.0 * logits_u.sum()

    def adversarial_loss(self, logits_l: torch.Tensor, logits_u: torch.Tensor) -> torch.Tensor:
        """BCE of the discriminator (labelled = 1, unlabelled = 0) on gradient-reversed softmax maps."""
        d_l = self.discriminator(grad_reverse(torch.softmax(logits_l, dim=1)))
        d_u = self.discriminator(grad_reverse(torch.softmax(logits_u, dim=1)))
        ones, zeros = torch.ones_like(d_l), torch.zeros_like(d_u)
        return 0.5 * (
            F.binary_cross_entropy_with_logits(d_l, ones) + F.binary_cross_entropy_with_logits(d_u, zeros)
        )

    def loss(self, module: Any, batch: dict[str, Any]) -> torch.Tensor:
        """See the class docstring; only the supervised loss when the batch has no ``image_u``."""
        out = module.training_outputs(batch)
        sup = module.supervised_loss_of(out, batch)
        x_u = batch.get("image_u")
        if x_u is None:
            return sup
        x_u = x_u.to(batch["image"])
        logits_u = output_logits(module.net(x_u))
        with torch.no_grad():
            teacher_probs = torch.softmax(output_logits(self.teacher(x_u)), dim=1)
        pl = self.pseudo_loss(logits_u, teacher_probs)
        w = self.weight * self.ramp(module, self.rampup)
        total = sup + w * pl
        self._logged = {"supervised": sup.detach(), "pseudo": pl.detach(), "pseudo_weight": w}
        if self.discriminator is not None:
            adv = self.adversarial_loss(output_logits(out), logits_u)
            total = total + self.adv_weight * adv
            self._logged["adversarial"] = adv.detach()
        return total
