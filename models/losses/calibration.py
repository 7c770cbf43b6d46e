"""Calibration-aware losses: NACL (MONAI), SVLS and SAUNA-style soft labels.

All follow the registry convention (mode: multiclass-softmax; binary tasks have C=2):
``loss(logits (B, C, *spatial), target (B, 1, *spatial) int64) -> scalar``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import NACLLoss
from monai.networks import one_hot
from monai.transforms.utils import distance_transform_edt
from torch import nn

from models.registry import register_loss


@register_loss(
    "nacl", description="CE + neighbour-aware calibration penalty on logits (Murugesan et al. 2023; MONAI)"
)
class NeighbourAwareCalibrationLoss(nn.Module):
    """CE + neighbour-aware logit penalty (Murugesan et al., MICCAI 2023,
    https://arxiv.org/abs/2303.06268), MONAI ``NACLLoss``.

    MONAI's loss needs the class count and dimensionality at construction and a ``(B, *spatial)``
    target; this wrapper builds it on the first call from the logits. Mode: multiclass-softmax;
    ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 -> scalar. The penalty is on
    raw logits, so it is not 0 for a perfect, very confident prediction.

    Args:
        kernel_size: neighbourhood size of the smoothed label.
        kernel_ops: ``"mean"`` or ``"gaussian"`` smoothing.
        distance_type: ``"l1"`` or ``"l2"`` penalty.
        alpha: penalty weight.
        sigma: Gaussian width for ``kernel_ops="gaussian"``.
    """

    def __init__(
        self,
        kernel_size: int = 3,
        kernel_ops: str = "mean",
        distance_type: str = "l1",
        alpha: float = 0.1,
        sigma: float = 1.0,
    ) -> None:
        super().__init__()
        self.options = dict(
            kernel_size=kernel_size,
            kernel_ops=kernel_ops,
            distance_type=distance_type,
            alpha=alpha,
            sigma=sigma,
        )
        self._losses: dict[tuple[int, int], NACLLoss] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` -> scalar."""
        key = (logits.shape[1], logits.dim() - 2)
        if key not in self._losses:
            self._losses[key] = NACLLoss(classes=key[0], dim=key[1], **self.options)
        return self._losses[key](logits, target[:, 0].long())


def svls_kernel(spatial_dims: int, kernel_size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """SVLS kernel: a Gaussian whose centre weight equals the sum of the others, normalised.

    Returns:
        ``(kernel_size,) * spatial_dims`` tensor summing to 1 with centre weight 0.5.
    """
    r = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
    grid = torch.stack(torch.meshgrid(*[r] * spatial_dims, indexing="ij"))
    k = torch.exp(-(grid**2).sum(0) / (2 * sigma**2))
    centre = (kernel_size // 2,) * spatial_dims
    k[centre] = 0.0
    k[centre] = k.sum()
    return k / k.sum()


def svls_target(target: torch.Tensor, num_classes: int, kernel: torch.Tensor) -> torch.Tensor:
    """Spatially varying smoothed one-hot label.

    Args:
        target: ``(B, 1, *spatial)`` int64 labels.
        num_classes: ``C``.
        kernel: ``(k,) * d`` smoothing kernel summing to 1.

    Returns:
        ``(B, C, *spatial)`` soft labels summing to 1 over ``C`` (replicate padding at borders).
    """
    d = target.dim() - 2
    oh = one_hot(target, num_classes=num_classes, dtype=torch.float32)
    pad = kernel.shape[0] // 2
    oh = F.pad(oh, (pad,) * (2 * d), mode="replicate")
    weight = kernel.to(oh).expand(num_classes, 1, *kernel.shape)
    conv = F.conv2d if d == 2 else F.conv3d
    return conv(oh, weight, groups=num_classes)


@register_loss(
    "svls", description="CE against spatially varying label smoothing targets (Islam & Glocker 2021)"
)
class SVLSLoss(nn.Module):
    """Cross-entropy against SVLS soft labels (Islam & Glocker, IPMI 2021,
    https://arxiv.org/abs/2104.05788).

    Mode: multiclass-softmax; ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 ->
    scalar. Away from boundaries the target is one-hot; near them it mixes the neighbours'
    classes, which reduces over-confidence at the edges.

    Args:
        kernel_size: smoothing window.
        sigma: Gaussian width.
    """

    def __init__(self, kernel_size: int = 3, sigma: float = 1.0) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.sigma = sigma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` -> scalar."""
        kernel = svls_kernel(logits.dim() - 2, self.kernel_size, self.sigma)
        with torch.no_grad():
            soft = svls_target(target, logits.shape[1], kernel).to(logits.dtype)
        return -(soft * torch.log_softmax(logits, dim=1)).sum(1).mean()


def sauna_soft_labels(mask: torch.Tensor, kernel_ratio: float = 2.0) -> torch.Tensor:
    """SAUNA-style soft labels from boundary distance and local thickness (Dang et al. 2024).

    For each binary map: ``b = (d_in - min(d_out, m)) / m`` (signed distance to the boundary
    normalised by the largest inner distance ``m``) and ``t`` = local thickness (max-pooled inner
    distance / ``m``; outside the object with a ``kernel_ratio`` times larger window). Inside:
    ``b + (1 - t)``, outside near an object: ``b - (1 - t)``, elsewhere -1; clipped to [-1, 1]
    and mapped to [0, 1]. Thin vessels stay near 1, boundaries of thick vessels become soft.

    Args:
        mask: ``(N, *spatial)`` binary maps (2D or 3D).
        kernel_ratio: outer/inner thickness window ratio.

    Returns:
        ``(N, *spatial)`` float soft labels in ``[0, 1]`` (0 for an empty map).
    """
    d = mask.dim() - 1
    fg = mask > 0.5
    d_in = torch.as_tensor(distance_transform_edt(fg.float()), dtype=torch.float32).to(mask.device)
    d_out = torch.as_tensor(distance_transform_edt((~fg).float()), dtype=torch.float32).to(mask.device)
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    pool = F.max_pool2d if d == 2 else F.max_pool3d
    for i in range(mask.shape[0]):
        m = float(d_in[i].max())
        if m == 0.0:
            continue
        b = (d_in[i] - d_out[i].clamp(max=m)) / m
        k_in = 2 * (int(round(m)) // 2) + 1
        k_out = 2 * (int(round(m * kernel_ratio)) // 2) + 1
        t_in = pool(d_in[i][None, None], k_in, stride=1, padding=k_in // 2)[0, 0] / m
        t_out = pool(d_in[i][None, None], k_out, stride=1, padding=k_out // 2)[0, 0] / m
        c = torch.where(fg[i], b + (1.0 - t_in), b - (1.0 - t_out))
        c = torch.where(~fg[i] & (t_out == 0), torch.full_like(c, -1.0), c)
        out[i] = (c.clamp(-1.0, 1.0) + 1.0) / 2.0
    return out


def jaccard_metric_loss(prob: torch.Tensor, soft: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Soft Jaccard compatible with soft labels (Wang & Blaschko 2023, JML).

    ``1 - (|x| + |y| - |x - y|) / (|x| + |y| + |x - y|)`` per sample and channel (L1 norms),
    averaged. Zero iff ``prob == soft``.

    Args:
        prob: ``(B, K, *spatial)`` probabilities.
        soft: ``(B, K, *spatial)`` soft labels in ``[0, 1]``.
        smooth: smoothing.
    """
    axes = list(range(2, prob.dim()))
    s = prob.sum(axes) + soft.sum(axes)
    diff = (prob - soft).abs().sum(axes)
    return (1.0 - (s - diff + smooth) / (s + diff + smooth)).mean()


@register_loss(
    "sauna",
    description="Jaccard metric loss vs SAUNA soft labels (boundary distance + thickness; Dang et al. 2024)",
)
class SaunaLoss(nn.Module):
    """Jaccard metric loss against SAUNA-style soft labels (https://arxiv.org/abs/2405.16815).

    Mode: multiclass-softmax; each foreground class gets its own soft map. ``logits
    (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 -> scalar. Distance transforms use
    MONAI (cuCIM on GPU when installed, SciPy otherwise).

    Args:
        kernel_ratio: outer/inner thickness window ratio.
        include_background: also fit channel 0 (to ``1 - sum`` of the foreground soft maps).
    """

    def __init__(self, kernel_ratio: float = 2.0, include_background: bool = False) -> None:
        super().__init__()
        self.kernel_ratio = kernel_ratio
        self.include_background = include_background

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` -> scalar."""
        b, c = logits.shape[:2]
        with torch.no_grad():
            oh = one_hot(target, num_classes=c, dtype=torch.float32)[:, 1:]
            soft = sauna_soft_labels(oh.reshape(-1, *oh.shape[2:]), self.kernel_ratio)
            soft = soft.reshape(oh.shape).to(logits.dtype)
            if self.include_background:
                soft = torch.cat([(1.0 - soft.sum(1, keepdim=True)).clamp(min=0.0), soft], 1)
        prob = torch.softmax(logits, dim=1)
        return jaccard_metric_loss(prob if self.include_background else prob[:, 1:], soft)


__all__ = [
    "NeighbourAwareCalibrationLoss",
    "SVLSLoss",
    "SaunaLoss",
    "jaccard_metric_loss",
    "sauna_soft_labels",
    "svls_kernel",
    "svls_target",
]
