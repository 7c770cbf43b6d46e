"""Multi-scale self-guided attention network (MS-Dual-Guided).

Sinha and Dolz, "Multi-scale self-guided attention for medical image segmentation", IEEE JBHI
2020, https://arxiv.org/abs/1906.02849 (§III).

- Multi-scale features: the four stages of a ResNeXt-101 32×4d (the authors' code's backbone;
  :class:`models.layers.resnet.ResNetEncoder` with grouped bottlenecks)
  are reduced to ``channels`` by 1×1 conv + BN + PReLU and upsampled to stride 4 (``F_s``); their
  concatenation is fused into one multi-scale map ``F_MS`` (conv 3×3, 3×3, 1×1).
- Guided attention, two stacked steps per scale: the input ``[F_s, G]`` (``G = F_MS`` in step 1,
  ``A_s * F_MS`` in step 2, ``A_s`` the step-1 attention) goes through a position (spatial)
  self-attention branch and a channel self-attention branch (DANet's PAM and CAM, §III-B), whose
  sum is gated by the output of a small encoder-decoder (the semantic guidance module, shared by
  the scales of a step) that reconstructs its input.
- Outputs: a prediction from each ``F_s`` and from each refined map; the segmentation is the mean
  of the four refined predictions. Training (the paper's terms): the run's loss (the paper's
  cross-entropy: ``loss: ce``) on the segmentation and, as deep supervision declared at
  registration, on all eight predictions (weight 1 each); :meth:`MSGANet.aux_loss` adds 0.25 × the
  semantic-vector consistency between the two steps and 0.1 × the reconstruction error of the
  guidance modules.

All layers are written for 2D and 3D alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers import Conv, Pool
from torch import nn

from models.deep_supervision import DeepSupervision, constant_weights
from models.layers.conv import conv, conv_norm_act
from models.layers.resize import resize_to
from models.layers.resnet import ResNetEncoder
from models.registry import register_model


def _cna(
    spatial_dims: int, cin: int, cout: int, kernel: int, norm: str, act: str | None = "prelu"
) -> Convolution:
    return conv_norm_act(spatial_dims, cin, cout, kernel, norm=norm, act=act)


class PositionAttention(nn.Module):
    """DANet position attention: ``x + γ · V softmax(Qᵀ K)ᵀ`` over all positions; ``(B, C, *S)`` -> same.

    ``γ`` starts at 0 (the block starts as the identity), queries and keys have ``C / 8`` channels.
    """

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = conv(spatial_dims, channels, inner, kernel_size=1)
        self.key = conv(spatial_dims, channels, inner, kernel_size=1)
        self.value = conv(spatial_dims, channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, *S)`` -> same shape."""
        b, c = x.shape[:2]
        q, k = self.query(x).flatten(2), self.key(x).flatten(2)  # (B, C', N)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N, N): row i attends over j
        out = self.value(x).flatten(2) @ attn.transpose(1, 2)
        return x + self.gamma * out.reshape(x.shape)


class ChannelAttention(nn.Module):
    """DANet channel attention ``x + γ · softmax(max(E) - E) X``, ``E = X Xᵀ``: ``(B, C, *S)`` -> same."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, *S)`` -> same shape."""
        flat = x.flatten(2)  # (B, C, N)
        energy = flat @ flat.transpose(1, 2)
        attn = torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)
        return x + self.gamma * (attn @ flat).reshape(x.shape)


class _AttentionBranch(nn.Sequential):
    """conv 3×3 (2C -> C) + BN + PReLU, PAM or CAM, conv 3×3 + BN + PReLU."""

    def __init__(self, spatial_dims: int, channels: int, attention: nn.Module, norm: str) -> None:
        super().__init__(
            _cna(spatial_dims, 2 * channels, channels, 3, norm),
            attention,
            _cna(spatial_dims, channels, channels, 3, norm),
        )


class SemanticGuidance(nn.Module):
    """Encoder-decoder that reconstructs its input: ``x (B, C, *S)`` -> (embedding, reconstruction).

    Two encoder blocks (two conv 3×3 + BN + ReLU, then 2× max-pool; widths ``2C``, ``4C``) and two
    decoder blocks (two conv 3×3 + BN + ReLU, 2× transposed conv; widths ``2C``, ``C``). ``S`` must be
    divisible by 4. The embedding is the deepest encoder map ``(B, 4C, *S/4)``.
    """

    def __init__(self, spatial_dims: int, channels: int, norm: str) -> None:
        super().__init__()
        sd, c = spatial_dims, channels
        pool = Pool[Pool.MAX, sd]
        up = Conv[Conv.CONVTRANS, sd]

        def convs(cin: int, cout: int) -> list[nn.Module]:
            return [_cna(sd, cin, cout, 3, norm, "relu"), _cna(sd, cout, cout, 3, norm, "relu")]

        self.enc = nn.ModuleList(
            [nn.Sequential(*convs(c, 2 * c), pool(2)), nn.Sequential(*convs(2 * c, 4 * c), pool(2))]
        )
        self.dec = nn.ModuleList(
            [
                nn.Sequential(*convs(4 * c, 2 * c), up(2 * c, 2 * c, kernel_size=2, stride=2)),
                nn.Sequential(*convs(2 * c, c), up(c, c, kernel_size=2, stride=2)),
            ]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, *S)`` -> ``(embedding (B, 4C, *S / 4), reconstruction (B, C, *S))``."""
        e1 = self.enc[0](x)
        e2 = self.enc[1](e1)
        d = resize_to(self.dec[0](e2), e1.shape[2:])
        return e2, resize_to(self.dec[1](d), x.shape[2:])


class GuidedAttention(nn.Module):
    """One guided-attention step at one scale: ``conv1×1((PAM + CAM) · conv3×3(guide))``.

    ``forward(x (B, 2C, *S), guidance)`` -> ``(B, C, *S)``; ``guidance`` is the reconstruction
    ``(B, 2C, *S)`` of the (shared) :class:`SemanticGuidance` module of this step.
    """

    def __init__(self, spatial_dims: int, channels: int, norm: str) -> None:
        super().__init__()
        self.pam = _AttentionBranch(spatial_dims, channels, PositionAttention(spatial_dims, channels), norm)
        self.cam = _AttentionBranch(spatial_dims, channels, ChannelAttention(), norm)
        self.guide = conv(spatial_dims, 2 * channels, channels, kernel_size=3, padding=1)
        self.out = conv(spatial_dims, channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """``x (B, 2C, *S)``, ``guidance (B, 2C, *S)`` -> ``(B, C, *S)``."""
        return self.out((self.pam(x) + self.cam(x)) * self.guide(guidance))


@register_model(
    "msga_net",
    family="cnn",
    dims=(2, 3),
    description="Multi-scale self-guided attention: ResNeXt-101 features refined by guided PAM + CAM",
    paper="https://arxiv.org/abs/1906.02849",
    small={
        "layers": (1, 1, 1, 1),
        "base_channels": 8,
        "groups": 4,
        "width_per_group": 16,
        "channels": 8,
        "output_stride": 16,
    },
    options=(
        "layers base_channels groups width_per_group channels output_stride norm semantic_weight "
        "reconstruction_weight"
    ),
    encoder="encoder",
    deep_supervision=DeepSupervision(constant_weights(1.0)),
)
class MSGANet(nn.Module):
    """``forward(x (B, in_channels, *S))`` -> ``{"logits": (B, out_channels, *S), "aux": [...], ...}``.

    ``aux`` holds the eight side predictions (first the four from ``F_s``, then the four refined),
    deeply supervised; ``semantic`` the two steps' embeddings per scale and ``reconstruction``
    (input, output) pairs of the guidance modules, used by :meth:`aux_loss`. ``S`` must be
    divisible by 16. The defaults are the paper's size (ResNeXt-101 32×4d, 64 attention channels).

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        layers, base_channels, groups, width_per_group: the grouped-bottleneck ResNet encoder.
        channels: width of the reduced features and the attention modules.
        output_stride: 32, or 16 to dilate the last ResNet stage instead of striding it (the small
            size uses it, so that a 32-voxel patch keeps more than one value per channel for
            batch norm).
        norm: MONAI norm name.
        semantic_weight, reconstruction_weight: weights of the guidance terms of :meth:`aux_loss`.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        layers: Sequence[int] = (3, 4, 23, 3),
        base_channels: int = 64,
        groups: int = 32,
        width_per_group: int = 4,
        channels: int = 64,
        output_stride: int = 32,
        norm: str = "batch",
        semantic_weight: float = 0.25,
        reconstruction_weight: float = 0.1,
    ) -> None:
        super().__init__()
        sd, c = spatial_dims, channels
        self.encoder = encoder = ResNetEncoder(
            sd,
            in_channels,
            layers,
            bottleneck=True,
            base_channels=base_channels,
            output_stride=output_stride,
            multi_grid=(1,),
            norm=norm,
            groups=groups,
            width_per_group=width_per_group,
        )
        self.semantic_weight, self.reconstruction_weight = semantic_weight, reconstruction_weight
        self.reduce = nn.ModuleList(_cna(sd, cin, c, 1, norm) for cin in encoder.out_channels)
        self.fuse = nn.Sequential(
            _cna(sd, 4 * c, c, 3, norm), _cna(sd, c, c, 3, norm), _cna(sd, c, c, 1, norm)
        )
        self.guidance = nn.ModuleList(SemanticGuidance(sd, 2 * c, norm) for _ in range(2))  # per step
        self.steps = nn.ModuleList(
            nn.ModuleList(GuidedAttention(sd, c, norm) for _ in encoder.out_channels) for _ in range(2)
        )
        self.heads = nn.ModuleList(
            conv(sd, c, out_channels, kernel_size=1) for _ in range(2 * len(self.reduce))
        )

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """``x (B, in_channels, *S)`` -> the dict of the class docstring."""
        stages = self.encoder(x)
        size = stages[0].shape[2:]
        feats = [resize_to(r(f), size) for r, f in zip(self.reduce, stages)]
        fused = self.fuse(torch.cat(feats, dim=1))
        semantic: list[list[torch.Tensor]] = [[], []]
        recon: list[tuple[torch.Tensor, torch.Tensor]] = []
        refined = []
        for s, f in enumerate(feats):
            guide_in = fused
            for step in range(2):
                inp = torch.cat([f, guide_in], dim=1)
                embedding, reconstruction = self.guidance[step](inp)
                semantic[step].append(embedding)
                recon.append((inp, reconstruction))
                att = self.steps[step][s](inp, reconstruction)
                guide_in = att * fused
            refined.append(att)
        n = len(feats)
        preds = [resize_to(self.heads[i](f), x.shape[2:]) for i, f in enumerate(feats)]
        preds += [resize_to(self.heads[n + i](r), x.shape[2:]) for i, r in enumerate(refined)]
        logits = torch.stack(preds[n:]).mean(dim=0)
        return {"logits": logits, "aux": preds, "semantic": semantic, "reconstruction": recon}

    def aux_loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        """The paper's guidance terms: semantic consistency + reconstruction (``batch`` is not used).

        The eight side predictions are deeply supervised by the run's loss (the registration).
        """
        first, second = outputs["semantic"]
        sem = sum(F.mse_loss(a, b) for a, b in zip(first, second))
        rec = sum(F.mse_loss(inp, out) for inp, out in outputs["reconstruction"])
        return self.semantic_weight * sem + self.reconstruction_weight * rec
