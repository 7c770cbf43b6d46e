"""``mean_teacher``: Tarvainen & Valpola, NeurIPS 2017, https://arxiv.org/abs/1703.01780."""

from __future__ import annotations

from typing import Any

import torch

from models.registry import register_scheme
from models.schemes.base import TeacherScheme, all_images
from models.schemes.functional import output_logits, softmax_mse


@register_scheme(
    "mean_teacher",
    needs_unlabelled=False,  # its terms also apply to labelled images
    options="weight decay noise_std rampup",
    description="EMA teacher; MSE between student and teacher softmax on noisy views (Tarvainen 2017)",
    paper="https://arxiv.org/abs/1703.01780",
)
class MeanTeacherScheme(TeacherScheme):
    """Supervised loss + ``weight * ramp(step) * MSE(softmax(student(x + n1)), softmax(teacher(x + n2)))``.

    The consistency term covers every image of the batch (``image`` and ``image_u``); the two
    views get independent Gaussian noise; the teacher gets no gradient.

    Args:
        weight: consistency weight after the ramp-up.
        decay: EMA decay of the teacher (warm start ``min(1 - 1/(n + 1), decay)``).
        noise_std: standard deviation of the Gaussian input noise of each view.
        rampup: ramp-up length ``exp(-5 (1 - t)^2)`` as a fraction of the run's steps.
    """

    def __init__(self, weight: float = 1.0, decay: float = 0.99, noise_std: float = 0.1, rampup: float = 0.4):
        super().__init__(decay=decay)
        self.weight = float(weight)
        self.noise_std = float(noise_std)
        self.rampup = float(rampup)

    def loss(self, module: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Supervised loss + ramped consistency; see the class docstring."""
        sup = module.training_loss_supervised(batch)
        x = all_images(batch)
        student = torch.softmax(output_logits(module.net(x + self.noise_std * torch.randn_like(x))), dim=1)
        with torch.no_grad():
            teacher = torch.softmax(
                output_logits(self.teacher(x + self.noise_std * torch.randn_like(x))), dim=1
            )
        cons = softmax_mse(student, teacher)
        w = self.weight * self.ramp(module, self.rampup)
        self._logged = {
            "supervised": sup.detach(),
            "consistency": cons.detach(),
            "cons_weight": w,
        }
        return sup + w * cons
