"""``scribble``: training on scribbles with partial cross-entropy (Tang et al., ECCV 2018,
https://arxiv.org/abs/1804.01346): only scribbled voxels (label != 255) are supervised."""

from __future__ import annotations

from typing import Any

import torch

from models.registry import register_scheme
from models.schemes.base import TrainingScheme
from models.schemes.functional import IGNORE_INDEX, masked_entropy, output_logits


@register_scheme(
    "scribble",
    train_labels="scribble",
    loss="partial_ce",
    options="entropy",
    description="scribble labels (255 = unlabelled): the run's partial_ce loss, optional entropy term",
    paper="https://arxiv.org/abs/1804.01346",
)
class ScribbleScheme(TrainingScheme):
    """The module's loss (``partial_ce``, required by the registration) on the scribbled voxels,
    plus ``entropy *`` the mean softmax entropy on unscribbled voxels (default 0: none).

    Args:
        entropy: weight of the entropy-minimisation term on voxels labelled 255.
    """

    def __init__(self, entropy: float = 0.0) -> None:
        super().__init__()
        self.entropy = float(entropy)

    def loss(self, module: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Partial CE (the module's loss) + ``entropy * H(unscribbled)``."""
        out = module.training_outputs(batch)
        sup = module.supervised_loss_of(out, batch)
        if self.entropy == 0.0:
            return sup
        mask = batch["label"][:, 0] == IGNORE_INDEX
        ent = masked_entropy(output_logits(out), mask)
        self._logged = {"supervised": sup.detach(), "entropy": ent.detach()}
        return sup + self.entropy * ent
