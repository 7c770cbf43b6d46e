"""BASNet's hybrid loss: BCE + SSIM + IoU (Qin et al., CVPR 2019, Sec. 3.4, Eqs. 2-6).

Qin et al., "BASNet: Boundary-Aware Salient Object Detection", CVPR 2019,
https://openaccess.thecvf.com/content_CVPR_2019/html/Qin_BASNet_Boundary-Aware_Salient_Object_Detection_CVPR_2019_paper.html

``l = l_bce + l_ssim + l_iou`` on a probability map ``p`` and its binary ground truth ``g``:

- ``l_bce``: pixel-wise binary cross-entropy (pixel level);
- ``l_ssim = 1 - SSIM(p, g)``: SSIM with an 11-tap Gaussian window (sigma 1.5), ``C1 = 0.01^2``,
  ``C2 = 0.03^2``, zero padding at the border ("same" convolution, as in the official code),
  averaged over the map (patch level, weighs boundary pixels more);
- ``l_iou = 1 - sum(p g) / sum(p + g - p g)`` per image (map level).

Mode: multiclass-softmax. ``p`` is the softmax probability of each class (one-vs-rest maps, so
for ``C = 2`` the BCE term equals the softmax cross-entropy); the terms are averaged over the
batch and the classes (foreground classes unless ``include_background``). 2D and 3D (the
Gaussian window is separable along every spatial axis).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.registry import register_loss


def gaussian_window(window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps ``(window_size,)`` summing to 1."""
    r = torch.arange(window_size, dtype=torch.float64) - (window_size - 1) / 2
    w = torch.exp(-(r**2) / (2 * sigma**2))
    return (w / w.sum()).float()


def _blur(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filtering with zero padding: ``(N, 1, *spatial)`` -> same shape."""
    spatial_dims = x.dim() - 2
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial_dims - 1]
    k = taps.shape[0]
    for axis in range(spatial_dims):
        shape = [1, 1] + [1] * spatial_dims
        shape[2 + axis] = k
        pad = [0] * spatial_dims
        pad[axis] = k // 2
        x = conv(x, taps.to(x).view(shape), padding=tuple(pad))
    return x


def ssim_map(
    preds: torch.Tensor,
    target: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Local SSIM between two maps in ``[0, 1]`` (data range 1, population covariances).

    Args:
        preds, target: ``(N, *spatial)`` maps, ``spatial`` 2D or 3D.
        window_size, sigma: Gaussian window; zero padding keeps the map size.
        k1, k2: stability constants, ``C1 = k1^2``, ``C2 = k2^2``.

    Returns:
        ``(N, *spatial)`` SSIM values.
    """
    taps = gaussian_window(window_size, sigma)
    x, y = preds.unsqueeze(1), target.unsqueeze(1).to(preds)
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y]), taps).split(x.shape[0])
    mu_x, mu_y, xx, yy, xy = stats
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = k1**2, k2**2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).squeeze(1)


def _log_not(logits: torch.Tensor, first: int) -> torch.Tensor:
    """``log(1 - softmax(logits)_c)`` for ``c >= first``, exact: ``logsumexp_{k != c} - logsumexp``.

    ``logits (B, C, *spatial)`` -> ``(B, C - first, *spatial)``.
    """
    total = torch.logsumexp(logits, dim=1)
    rest = [
        torch.logsumexp(torch.cat([logits[:, :c], logits[:, c + 1 :]], dim=1), dim=1)
        for c in range(first, logits.shape[1])
    ]
    return torch.stack(rest, dim=1) - total.unsqueeze(1)


def basnet_hybrid_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    include_background: bool = False,
    window_size: int = 11,
    sigma: float = 1.5,
    smooth: float = 1e-6,
) -> torch.Tensor:
    """BCE + (1 - SSIM) + (1 - IoU) on the softmax probability map of every class.

    Args:
        logits: ``(B, C, *spatial)`` raw scores, ``C >= 2``.
        target: ``(B, 1, *spatial)`` int64 labels in ``[0, C)``.
        include_background: also score channel 0.
        window_size, sigma: SSIM Gaussian window.
        smooth: added to the IoU numerator and denominator (an empty class predicted empty
            scores IoU 1).

    Returns:
        scalar; 0 only for a perfect, infinitely confident prediction.
    """
    if target.shape[1] != 1 or target.shape[2:] != logits.shape[2:]:
        raise ValueError(
            f"basnet_hybrid: target {tuple(target.shape)} does not fit logits {tuple(logits.shape)}"
        )
    num_classes = logits.shape[1]
    first = 0 if include_background else 1
    logits = logits.float()
    log_p = torch.log_softmax(logits, dim=1)[:, first:]
    onehot = F.one_hot(target[:, 0].long(), num_classes).movedim(-1, 1)[:, first:].float()
    prob = log_p.exp()
    bce = -(onehot * log_p + (1 - onehot) * _log_not(logits, first)).mean()
    flat_p, flat_g = prob.flatten(0, 1), onehot.flatten(0, 1)  # (B * C', *spatial)
    ssim = ssim_map(flat_p, flat_g, window_size, sigma).flatten(1).mean(1)
    inter = (flat_p * flat_g).flatten(1).sum(1)
    union = (flat_p + flat_g - flat_p * flat_g).flatten(1).sum(1)
    iou = (inter + smooth) / (union + smooth)
    return bce + (1 - ssim).mean() + (1 - iou).mean()


@register_loss(
    "basnet_hybrid",
    description="BASNet hybrid loss: BCE + SSIM + IoU on softmax class maps (Qin et al. 2019)",
)
class BASNetHybridLoss(nn.Module):
    """``nn.Module`` wrapper of :func:`basnet_hybrid_loss`.

    Mode: multiclass-softmax. ``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` int64 ->
    scalar. Arguments as in :func:`basnet_hybrid_loss`.
    """

    def __init__(
        self,
        include_background: bool = False,
        window_size: int = 11,
        sigma: float = 1.5,
        smooth: float = 1e-6,
    ) -> None:
        super().__init__()
        self.options = dict(
            include_background=include_background, window_size=window_size, sigma=sigma, smooth=smooth
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits (B, C, *spatial)``, ``target (B, 1, *spatial)`` -> scalar."""
        return basnet_hybrid_loss(logits, target, **self.options)
