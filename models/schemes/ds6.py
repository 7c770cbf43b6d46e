"""``ds6``: DS6, deformation-aware semi-supervised learning (Chatterjee et al., J. Imaging 2022,
https://doi.org/10.3390/jimaging8100259, https://arxiv.org/abs/2006.10802).

Each step draws a smooth random displacement field (the known deformation), deforms the images,
and asks the prediction of the deformed view to equal the deformed prediction of the original
view. Faithfulness notes: ``docs/models.md`` (DS6).
"""

from __future__ import annotations

from typing import Any

import torch

from models.registry import register_scheme
from models.schemes.base import TrainingScheme, all_images
from models.schemes.functional import deformation_consistency, output_logits, random_displacement, warp


@register_scheme(
    "ds6",
    needs_unlabelled=False,  # its terms also apply to labelled images
    options="weight magnitude control_points rampup deformed_supervised",
    description="DS6: consistency under a known elastic deformation + supervised loss on the deformed pair",
    paper="https://doi.org/10.3390/jimaging8100259",
)
class DS6Scheme(TrainingScheme):
    """Supervised loss on ``image`` (+ on the deformed image with the deformed label, nearest) +
    ``weight * ramp * MSE(softmax(f(T x)), softmax(T f(x)))`` on ``image`` and ``image_u``.

    The field is drawn from a ``torch.Generator`` seeded with ``torch.initial_seed()`` (the run's
    seed) and the scheme's step, so a run and its resume see the same deformations.

    Args:
        weight: consistency weight (DS6: 1, no ramp-up).
        magnitude: largest control-point displacement in normalised units (1 = half the patch;
            DS6 draws 0.01-0.03 per batch).
        control_points: control points per axis, the outer ring fixed (DS6 draws 5-7).
        rampup: sigmoid ramp-up of the consistency weight, fraction of the run (0: none).
        deformed_supervised: add the supervised loss of the deformed image and label (DS6 does).
    """

    def __init__(
        self,
        weight: float = 1.0,
        magnitude: float = 0.03,
        control_points: int = 6,
        rampup: float = 0.0,
        deformed_supervised: bool = True,
    ) -> None:
        super().__init__()
        if control_points < 3:
            raise ValueError(f"control_points must be >= 3 (the outer ring is fixed), got {control_points}")
        self.weight = float(weight)
        self.magnitude = float(magnitude)
        self.control_points = int(control_points)
        self.rampup = float(rampup)
        self.deformed_supervised = bool(deformed_supervised)

    def displacement(self, batch: int, spatial: tuple[int, ...]) -> torch.Tensor:
        """This step's field ``(batch, *spatial, dims)`` (CPU), reproducible from seed and step."""
        gen = torch.Generator().manual_seed(int(torch.initial_seed()) * 1_000_003 + int(self.step))
        return random_displacement(
            batch, spatial, magnitude=self.magnitude, control_points=self.control_points, generator=gen
        )

    def loss(self, module: Any, batch: dict[str, Any]) -> torch.Tensor:
        """See the class docstring."""
        image = batch["image"]
        x = all_images(batch)
        n = image.shape[0]
        field = self.displacement(x.shape[0], tuple(x.shape[2:])).to(x.device)
        x_def = warp(x, field)
        out = module.net(x)
        out_def = module.net(x_def)
        sup = module.supervised_loss_of(_rows(out, n), batch)
        total = sup
        if self.deformed_supervised:
            label_def = warp(batch["label"].to(x.dtype), field[:n], mode="nearest").round().long()
            deformed = {**batch, "image": x_def[:n], "label": label_def}
            total = total + module.supervised_loss_of(_rows(out_def, n), deformed)
        cons = deformation_consistency(output_logits(out), output_logits(out_def), field)
        w = self.weight * self.ramp(module, self.rampup)
        self._logged = {
            "supervised": sup.detach(),
            "consistency": cons.detach(),
            "cons_weight": w,
        }
        return total + w * cons


def _rows(out: torch.Tensor | dict[str, Any], n: int) -> torch.Tensor | dict[str, Any]:
    """The first ``n`` samples of a network output (a tensor, or a dict of tensors / tensor lists)."""
    if isinstance(out, torch.Tensor):
        return out[:n]
    return {k: _rows(v, n) if isinstance(v, (torch.Tensor, dict)) else _seq(v, n) for k, v in out.items()}


def _seq(value: Any, n: int) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(v[:n] if isinstance(v, torch.Tensor) else v for v in value)
    return value
