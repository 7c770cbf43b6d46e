"""MaskFormer: mask classification with learned queries on a CNN backbone, plus the RbA OOD score.

- MaskFormer: Cheng, Schwing and Kirillov, "Per-Pixel Classification is Not All You Need for
  Semantic Segmentation", NeurIPS 2021, https://arxiv.org/abs/2107.06278 (§3.2-3.4, Fig. 2).
- RbA: Nayal et al., "RbA: Segmenting Unknown Regions Rejected by All", ICCV 2023,
  https://arxiv.org/abs/2211.14293 (§3.2, the authors' ``get_RbA`` / ``semantic_inference``).

Parts (one implementation for 2D and 3D):

- backbone: :class:`models.layers.resnet.ResNetEncoder` (four stages at strides 4..32, or 2..16
  without the stem's max-pool);
- :class:`FPNPixelDecoder`: top-down FPN over the four stages giving per-pixel embeddings
  ``(B, mask_dim, *S/s)`` at the first stage's stride ``s``;
- a DETR-style transformer decoder (``torch.nn.TransformerDecoder``): ``num_queries`` learned
  queries cross-attend to the flattened deepest backbone features plus a sine position encoding;
- heads: class logits ``(B, Q, K + 1)`` (``K = out_channels`` classes and "no object"), an MLP
  mask embedding per query; mask logits ``(B, Q, *S)`` are its dot product with the per-pixel
  embeddings, upsampled to the input size.

``forward(x (B, in_channels, *S))`` returns a dict:

- ``"logits" (B, K, *S)``: MaskFormer's semantic inference
  ``log(sum_q softmax(class_q)[:K] * sigmoid(mask_q) + eps)``; segbench's per-pixel losses and
  sliding-window inference use it unchanged;
- ``"class_logits" (B, Q, K + 1)``, ``"mask_logits" (B, Q, *S)``;
- ``"ood" (B, *S)``: RbA, ``-sum_k tanh(sum_q softmax(class_q)[k] * sigmoid(mask_q))``, in
  ``(-K, 0]``, higher = more anomalous (:func:`rba_score`); :func:`case_ood_score` reduces it.

:meth:`MaskFormer.aux_loss` adds MaskFormer's set-prediction loss (Hungarian matching with
``scipy.optimize.linear_sum_assignment``) when ``matching_weight > 0``; off by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from models.layers.conv import conv, conv_norm_act
from models.layers.resize import resize_to
from models.layers.resnet import ResNetEncoder
from models.registry import register_model


def semantic_probabilities(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """MaskFormer's semantic inference (§3.4): ``sum_q softmax(class_q)[:K] * sigmoid(mask_q)``.

    Args:
        class_logits: ``(B, Q, K + 1)``, the last entry is "no object".
        mask_logits: ``(B, Q, *S)``.

    Returns:
        ``(B, K, *S)``, values in ``[0, Q]`` (not normalised over ``K``).
    """
    probs = class_logits.softmax(-1)[..., :-1]
    masks = mask_logits.sigmoid()
    return torch.einsum("bqk,bqn->bkn", probs, masks.flatten(2)).reshape(
        *probs.shape[:1], probs.shape[-1], *mask_logits.shape[2:]
    )


def rba_score(semantic: torch.Tensor) -> torch.Tensor:
    """RbA (Nayal et al. 2023): ``-sum_k tanh(semantic_k)``, higher = more anomalous.

    Args:
        semantic: ``(B, K, *S)`` from :func:`semantic_probabilities` (non-negative).

    Returns:
        ``(B, *S)`` in ``(-K, 0]``: 0 where every class rejects the pixel.
    """
    return -semantic.tanh().sum(1)


def case_ood_score(ood: torch.Tensor, fov: torch.Tensor | None = None) -> float:
    """One case's OOD score: the mean of the per-pixel RbA ``ood (*S)`` (over ``fov (*S)`` if given).

    ``fov`` is a boolean or 0/1 mask of the field of view; an empty ``fov`` gives NaN.
    """
    if fov is None:
        return float(ood.float().mean())
    keep = fov.to(torch.bool)
    if keep.shape != ood.shape:
        raise ValueError(f"fov shape {tuple(keep.shape)} differs from ood shape {tuple(ood.shape)}")
    return float(ood[keep].float().mean()) if keep.any() else float("nan")


def sine_position_encoding(shape: Sequence[int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """DETR's sine position encoding for any number of axes: ``(prod(shape), dim)``.

    Each axis gets ``dim // (2 * len(shape))`` frequencies (sin and cos) of its normalised
    coordinate in ``(0, 2 pi]``; channels left over are zero.
    """
    nd = len(shape)
    nfreq = dim // (2 * nd)
    freqs = temperature ** (torch.arange(nfreq, dtype=torch.float32) / max(nfreq, 1))
    axes = [(torch.arange(n, dtype=torch.float32) + 1) / n * 2 * math.pi for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, nd)  # (N, nd)
    angles = grid[:, :, None] / freqs  # (N, nd, nfreq)
    enc = torch.cat([angles.sin(), angles.cos()], -1).reshape(grid.shape[0], -1)
    return F.pad(enc, (0, dim - enc.shape[1]))


class FPNPixelDecoder(nn.Module):
    """MaskFormer's pixel decoder: an FPN over the backbone stages, then a 3x3 conv to ``mask_dim``.

    The deepest stage gets a 3x3 conv to ``channels``; each shallower one a 1x1 lateral conv
    added to the upsampled coarser map, then a 3x3 conv. ``forward(feats)`` with ``feats[i]
    (B, in_channels[i], *S_i)`` shallow first -> per-pixel embeddings ``(B, mask_dim, *S_0)``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: Sequence[int], channels: int, mask_dim: int, norm: str | tuple
    ) -> None:
        super().__init__()
        sd = spatial_dims
        self.top = conv_norm_act(sd, in_channels[-1], channels, 3, norm=norm)
        self.laterals = nn.ModuleList(
            conv_norm_act(sd, c, channels, 1, norm=norm, act=None) for c in in_channels[:-1]
        )
        self.outputs = nn.ModuleList(
            conv_norm_act(sd, channels, channels, 3, norm=norm) for _ in in_channels[:-1]
        )
        self.mask_features = conv(sd, channels, mask_dim, kernel_size=3, padding=1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """``feats`` shallow first -> ``(B, mask_dim, *feats[0].shape[2:])``."""
        y = self.top(feats[-1])
        for i in reversed(range(len(feats) - 1)):
            lateral = self.laterals[i](feats[i])
            y = self.outputs[i](lateral + resize_to(y, lateral.shape[2:]))
        return self.mask_features(y)


class _MLP(nn.Sequential):
    """``layers`` linear layers with ReLU between: ``(..., in_dim)`` -> ``(..., out_dim)``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int) -> None:
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [nn.Linear(dims[i], dims[i + 1])] + ([nn.ReLU()] if i < layers - 1 else [])
        super().__init__(*mods)


@register_model(
    "mask_former",
    family="hybrid",
    description="MaskFormer: ResNet + FPN pixel decoder, learned queries, mask classification; RbA OOD",
    paper="https://arxiv.org/abs/2107.06278",
    options=(
        "layers bottleneck base_channels stem_pool pixel_channels mask_dim hidden_dim num_queries "
        "dec_layers num_heads dim_feedforward dropout norm eps matching_weight no_object_weight"
    ),
    presets={
        "paper": {  # MaskFormer R50 (§4, Table 1): ResNet-50, 256-d FPN, 100 queries, 6 layers
            "layers": (3, 4, 6, 3),
            "bottleneck": True,
            "base_channels": 64,
            "stem_pool": True,
            "pixel_channels": 256,
            "mask_dim": 256,
            "hidden_dim": 256,
            "num_queries": 100,
            "dec_layers": 6,
            "num_heads": 8,
            "dim_feedforward": 2048,
            "dropout": 0.1,
        }
    },
    encoder="encoder",
)
class MaskFormer(nn.Module):
    """MaskFormer for semantic segmentation, with RbA's OOD score; see the module docstring.

    The defaults are the CPU size (preset ``small``); preset ``paper`` is MaskFormer R50.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes ``K`` (incl. background).
        layers, bottleneck, base_channels, stem_pool: the :class:`ResNetEncoder` backbone
            (output stride 32, no dilation); without ``stem_pool`` the masks have stride 2, not 4.
        pixel_channels, mask_dim: FPN width and per-pixel / per-query mask embedding size.
        hidden_dim, num_queries, dec_layers, num_heads, dim_feedforward, dropout: the
            transformer decoder (post-norm, ReLU, as DETR).
        norm: MONAI norm of the backbone and FPN.
        eps: added to the semantic probabilities before the log of ``"logits"``.
        matching_weight: weight of the set-prediction loss in :meth:`aux_loss` (0: off).
        no_object_weight: class weight of "no object" in that loss (MaskFormer's 0.1).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        layers: Sequence[int] = (1, 1, 1, 1),
        bottleneck: bool = False,
        base_channels: int = 16,
        stem_pool: bool = False,
        pixel_channels: int = 32,
        mask_dim: int = 32,
        hidden_dim: int = 64,
        num_queries: int = 8,
        dec_layers: int = 2,
        num_heads: int = 4,
        dim_feedforward: int = 128,
        dropout: float = 0.0,
        norm: str | tuple = "batch",
        eps: float = 1e-6,
        matching_weight: float = 0.0,
        no_object_weight: float = 0.1,
    ) -> None:
        super().__init__()
        sd = spatial_dims
        self.num_classes, self.eps = out_channels, eps
        self.matching_weight, self.no_object_weight = matching_weight, no_object_weight
        self.encoder = ResNetEncoder(
            sd, in_channels, layers, bottleneck, base_channels, 32, (1,), norm=norm, stem_pool=stem_pool
        )
        chans = self.encoder.out_channels
        self.pixel_decoder = FPNPixelDecoder(sd, chans, pixel_channels, mask_dim, norm)
        self.input_proj = conv(sd, chans[-1], hidden_dim, kernel_size=1)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        layer = nn.TransformerDecoderLayer(hidden_dim, num_heads, dim_feedforward, dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, dec_layers, norm=nn.LayerNorm(hidden_dim))
        self.class_embed = nn.Linear(hidden_dim, out_channels + 1)
        self.mask_embed = _MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (B, in_channels, *S)`` -> ``logits (B, K, *S)``, ``class_logits (B, Q, K+1)``,
        ``mask_logits (B, Q, *S)``, ``ood (B, *S)``."""
        feats = self.encoder(x)
        pixel = self.pixel_decoder(feats)  # (B, mask_dim, *S0)
        deep = self.input_proj(feats[-1])
        memory = deep.flatten(2).transpose(1, 2)  # (B, N, hidden)
        pos = sine_position_encoding(deep.shape[2:], deep.shape[1]).to(memory)
        queries = self.query_embed.weight.unsqueeze(0).expand(x.shape[0], -1, -1)
        hs = self.decoder(queries, memory + pos)  # (B, Q, hidden)
        class_logits = self.class_embed(hs)
        emb = self.mask_embed(hs)  # (B, Q, mask_dim)
        masks = torch.einsum("bqc,bcn->bqn", emb, pixel.flatten(2)).reshape(*emb.shape[:2], *pixel.shape[2:])
        mask_logits = resize_to(masks, x.shape[2:])
        semantic = semantic_probabilities(class_logits, mask_logits)
        return {
            "logits": torch.log(semantic + self.eps),
            "class_logits": class_logits,
            "mask_logits": mask_logits,
            "ood": rba_score(semantic),
        }

    def aux_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """``matching_weight`` × :func:`set_prediction_loss` on ``batch["label"] (B, 1, *S)``; 0 when off."""
        if self.matching_weight <= 0:
            return outputs["logits"].new_zeros(())
        loss = set_prediction_loss(
            outputs["class_logits"], outputs["mask_logits"], batch["label"], self.no_object_weight
        )
        return self.matching_weight * loss


def _dice_cost(masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``1 - dice`` of every prediction against every target: ``(Q, N)``, ``(T, N)`` -> ``(Q, T)``."""
    num = 2 * masks @ targets.T
    den = masks.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


def set_prediction_loss(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    label: torch.Tensor,
    no_object_weight: float = 0.1,
    class_weight: float = 2.0,
    mask_weight: float = 5.0,
    dice_weight: float = 5.0,
) -> torch.Tensor:
    """MaskFormer's set-prediction loss for semantic labels (one target segment per present class).

    Per image, queries are matched one-to-one to the present classes' binary masks (Hungarian,
    cost ``-class_weight * p_q(c) + mask_weight * BCE + dice_weight * (1 - dice)``); matched
    queries get cross-entropy on their class, sigmoid BCE and Dice on their mask; unmatched ones
    cross-entropy on "no object" (weight ``no_object_weight``). Weights are Mask2Former's;
    every pixel is used (no point sampling). Averaged over the batch.

    Args:
        class_logits: ``(B, Q, K + 1)``; mask_logits: ``(B, Q, *S)``.
        label: ``(B, 1, *S)`` int64 in ``[0, K)``.
    """
    num_classes = class_logits.shape[-1] - 1
    ce_weight = torch.ones(num_classes + 1, device=class_logits.device)
    ce_weight[-1] = no_object_weight
    total = class_logits.new_zeros(())
    for logits, masks, lab in zip(class_logits, mask_logits.flatten(2), label.flatten(1), strict=True):
        present = torch.unique(lab)
        targets = (lab[None, :] == present[:, None]).to(masks.dtype)  # (T, N)
        with torch.no_grad():
            prob = logits.softmax(-1)[:, present]  # (Q, T)
            bce = (
                F.binary_cross_entropy_with_logits(masks, torch.ones_like(masks), reduction="none")
                @ targets.T
                + F.binary_cross_entropy_with_logits(masks, torch.zeros_like(masks), reduction="none")
                @ (1 - targets).T
            ) / masks.shape[-1]
            cost = (
                -class_weight * prob + mask_weight * bce + dice_weight * _dice_cost(masks.sigmoid(), targets)
            )
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
        rows_t, cols_t = torch.as_tensor(rows), torch.as_tensor(cols)
        target_cls = torch.full((logits.shape[0],), num_classes, dtype=torch.long, device=logits.device)
        target_cls[rows_t] = present[cols_t]
        loss_ce = F.cross_entropy(logits, target_cls, weight=ce_weight)
        matched, tgt = masks[rows_t], targets[cols_t]
        loss_mask = F.binary_cross_entropy_with_logits(matched, tgt)
        loss_dice = torch.diagonal(_dice_cost(matched.sigmoid(), tgt)).mean()
        total = total + class_weight * loss_ce + mask_weight * loss_mask + dice_weight * loss_dice
    return total / class_logits.shape[0]


__all__ = [
    "FPNPixelDecoder",
    "MaskFormer",
    "case_ood_score",
    "rba_score",
    "semantic_probabilities",
    "set_prediction_loss",
    "sine_position_encoding",
]
