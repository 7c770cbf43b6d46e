"""Deep supervision: the run's own loss on a network's side outputs, weights declared at registration.

A deeply supervised network returns, in training mode, ``{"logits": final, "aux": [side, ...]}``
with side logits ``(B, C, *spatial_k)`` (at the input size or coarser). Its registration declares
how much each side output counts::

    @register_model("stu_net", ..., deep_supervision=DeepSupervision(halving_weights))

and :func:`supervised_loss` (what :class:`models.SegmentationModule` trains on) computes

    loss(final, target) + sum_k w_k * loss(aux_k, target_k)

with the *configured* loss (a ``dice+cldice`` run trains every head on Dice + clDice), the
weights ``w = weights(len(aux))`` and ``target_k`` the label, nearest-neighbour downsampled to
the side output's size where it is coarser (nnU-Net). Side outputs of weight 0 are not evaluated.
Terms that are not segmentation losses on side logits (a KL, a landmark or reconstruction error)
stay the network's own ``aux_loss``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Output = torch.Tensor | dict[str, Any]


def halving_weights(n: int) -> tuple[float, ...]:
    """nnU-Net: ``2^-k`` for the side output ``k = 1..n`` (finest first), 0 for the coarsest.

    Relative to the final output's weight 1; nnU-Net normalises all of them to sum 1, which
    only rescales the loss.
    """
    return tuple(2.0**-k for k in range(1, n)) + (0.0,) * min(n, 1)


def recursive_weights(n: int) -> tuple[float, ...]:
    """RRWNet's RRLoss for ``K = n`` refinement steps, side outputs ``[base, r_1, .., r_{K-1}]``.

    The paper's ``L(base) + sum_i i L(r_i) / Z`` with ``Z = K (K + 1) / 2`` scaled by ``Z / K`` so
    that the final ``r_K`` has weight 1: ``(K + 1) / 2`` for the base, ``i / K`` for ``r_i``.
    """
    return ((n + 1) / 2,) + tuple(i / n for i in range(1, n))


def _constant(weight: float, n: int) -> tuple[float, ...]:
    return (float(weight),) * n


def constant_weights(weight: float = 1.0) -> Callable[[int], tuple[float, ...]]:
    """The same ``weight`` for every side output (BASNet, MSGA-Net: 1; H-DenseUNet: 0.5)."""
    return functools.partial(_constant, weight)


@dataclass(frozen=True)
class DeepSupervision:
    """How a network's side outputs ``out["aux"]`` are supervised (a registration field).

    Args:
        weights: number of side outputs -> one weight per side output (in ``out["aux"]`` order),
            relative to the final output's weight 1.
    """

    weights: Callable[[int], Sequence[float]]

    def loss(
        self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], out: Output, target: torch.Tensor
    ) -> torch.Tensor:
        """``loss_fn(logits, target) + sum_k w_k * loss_fn(aux_k, target_k)``.

        Args:
            loss_fn: the run's loss, ``(logits (B, C, *sp), target (B, T, *sp)) -> scalar``.
            out: the network's output; a tensor or a dict without ``"aux"`` gets the final term only.
            target: ``(B, T, *spatial)`` int64 labels (``T = 1``, or ``R`` raters).
        """
        logits = out["logits"] if isinstance(out, dict) else out
        total = loss_fn(logits, target)
        aux = out.get("aux") if isinstance(out, dict) else None
        if not aux:
            return total
        weights = tuple(self.weights(len(aux)))
        if len(weights) != len(aux):
            raise ValueError(f"deep supervision: {len(weights)} weights for {len(aux)} side outputs")
        side = logits.new_zeros(())
        for w, a in zip(weights, aux):
            if w:
                side = side + w * loss_fn(a, resize_labels(target, a.shape[2:]))
        return total + side


def resize_labels(label: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of ``label (B, T, *spatial)`` int64 to ``(B, T, *size)`` (itself if equal)."""
    if tuple(label.shape[2:]) == tuple(size):
        return label
    return F.interpolate(label.float(), size=tuple(size), mode="nearest").long()


#: the attribute :func:`models.factory.create_model` sets on a deeply supervised net; a name of
#: segbench's own, since networks keep their own ``deep_supervision`` flag (MONAI's DynUNet: a bool)
ATTRIBUTE = "segbench_deep_supervision"


def supervised_loss(
    net: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    out: Output,
    target: torch.Tensor,
) -> torch.Tensor:
    """The run's loss on ``net``'s output: with the side outputs when ``net`` is deeply supervised.

    ``net.segbench_deep_supervision`` (:data:`ATTRIBUTE`) is set by
    :func:`models.factory.create_model` from the registration; without it only ``out["logits"]``
    (or the tensor ``out``) is scored.
    """
    spec: DeepSupervision | None = getattr(net, ATTRIBUTE, None)
    if spec is None:
        return loss_fn(out["logits"] if isinstance(out, dict) else out, target)
    return spec.loss(loss_fn, out, target)
