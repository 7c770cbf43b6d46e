"""The registered losses: pure functions plus thin ``nn.Module`` wrappers, one file per family.

Calling convention for every registered loss (mode: multiclass-softmax; binary tasks have C=2):

- ``logits``: ``(B, C, *spatial)`` raw network outputs, ``C >= 2`` (channel 0 = background);
- ``target``: ``(B, 1, *spatial)`` integer class labels in ``[0, C)`` (or ``(B, R, *spatial)``,
  every rater's labels, for a loss registered with ``targets="raters"``).

Each returns a scalar tensor. A loss file registers its losses with
``models.registry.register_loss`` (the one import path); ``models/__init__.py`` imports every
file of this folder, so adding a loss is adding a file;
build them with ``models.create_loss``. The files:

- :mod:`models.losses.region`: Dice, Dice + CE, CE, focal, Dice + focal, Tversky;
- :mod:`models.losses.topology`: clDice on the soft or the differentiable skeleton;
- :mod:`models.losses.calibration`: NACL, SVLS, SAUNA (label smoothing and calibration);
- :mod:`models.losses.mip`: maximum-intensity-projection loss (3D);
- :mod:`models.losses.basnet`: BASNet's hybrid BCE + SSIM + IoU loss;
- :mod:`models.losses.uncertainty`: UU-Mamba's uncertainty-weighted sum of losses;
- :mod:`models.losses.pulaski`: PULASki's rater-distribution distances and its focal Tversky baseline;
- :mod:`models.losses.algebra`: the weighted sum behind composite names (``"dice_ce+0.5*mip"``).
"""

from __future__ import annotations

from models.losses.algebra import WeightedSumLoss
from models.registry import parse_loss_name

__all__ = ["WeightedSumLoss", "parse_loss_name"]
