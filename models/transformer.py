"""Transformer family: MONAI's SwinUNETR and UNETR, in 2D and 3D.

- SwinUNETR: Hatamizadeh et al., "Swin UNETR: Swin Transformers for Semantic Segmentation of
  Brain Tumors in MRI Images", 2022, https://arxiv.org/abs/2201.01266.
- UNETR: Hatamizadeh et al., "UNETR: Transformers for 3D Medical Image Segmentation", WACV 2022,
  https://arxiv.org/abs/2103.10504.

Defaults are small so the models train on a CPU (they are also the preset ``small``); the
papers' sizes are the preset ``paper`` (MONAI's settings of the papers' 3D BTCV models, 96³ input):
SwinUNETR ``feature_size=48``, window 7, instance norm (62.2 M parameters with 1 input channel and
14 classes); UNETR ``feature_size=16, hidden_size=768, mlp_dim=3072, num_heads=12``, instance
norm, ``img_size=96`` (92.8 M). A run's ``img_size`` (the training patch) overrides the preset's.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import UNETR, SwinUNETR
from monai.utils import ensure_tuple_rep
from torch import nn

from models.registry import register_model

_DEFAULT_PATCH = {2: (64, 64), 3: (32, 32, 32)}


@register_model(
    "swin_unetr",
    family="transformer",
    dims=(2, 3),
    description="Swin UNETR (MONAI): shifted-window transformer encoder, CNN decoder",
    paper="https://arxiv.org/abs/2201.01266",
    options="feature_size depths num_heads window_size norm norm_groups drop_path use_v2",
    presets={
        "paper": {
            "feature_size": 48,
            "depths": (2, 2, 2, 2),
            "num_heads": (3, 6, 12, 24),
            "window_size": 7,
            "norm": "instance",
        }
    },
)
def swin_unetr(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    feature_size: int = 12,
    depths: Sequence[int] = (2, 2, 2, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    window_size: int = 4,
    norm: str = "group",
    norm_groups: int = 4,
    drop_path: float = 0.0,
    use_v2: bool = False,
) -> nn.Module:
    """Swin UNETR with a CPU-sized default (``feature_size`` 12, window 4).

    Every input spatial size must be divisible by 32 (patch embedding 2, then four 2× merges).
    ``feature_size`` must be divisible by 12; stage widths are ``feature_size * 2**i``.
    ``norm`` is the MONAI norm of the CNN blocks; the default is group norm with
    ``norm_groups`` groups because the paper's instance norm fails in training on the
    1-voxel bottleneck of a 32-voxel input (the default 3D patch); pass ``norm="instance"``
    for patches of 64 or more.
    """
    norm_name = ("group", {"num_groups": norm_groups}) if norm == "group" else norm
    return SwinUNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        depths=tuple(depths),
        num_heads=tuple(num_heads),
        window_size=window_size,
        feature_size=feature_size,
        norm_name=norm_name,
        dropout_path_rate=drop_path,
        spatial_dims=spatial_dims,
        use_v2=use_v2,
    )


@register_model(
    "unetr",
    family="transformer",
    dims=(2, 3),
    description="UNETR (MONAI): ViT encoder on 16-voxel patches, CNN decoder",
    paper="https://arxiv.org/abs/2103.10504",
    fixed_input_size=True,
    default_img_size=_DEFAULT_PATCH,
    options="img_size feature_size hidden_size mlp_dim num_heads norm dropout",
    presets={
        "paper": {
            "img_size": 96,
            "feature_size": 16,
            "hidden_size": 768,
            "mlp_dim": 3072,
            "num_heads": 12,
            "norm": "instance",
        }
    },
)
def unetr(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    img_size: int | Sequence[int] | None = None,
    feature_size: int = 12,
    hidden_size: int = 96,
    mlp_dim: int = 192,
    num_heads: int = 4,
    norm: str = "instance",
    dropout: float = 0.0,
) -> nn.Module:
    """UNETR with a CPU-sized default ViT (12 layers, width 96, 4 heads).

    The ViT has learned position embeddings, so the network only accepts inputs of exactly
    ``img_size`` (set it to the training patch size; sliding-window inference then uses the
    same window; an int means a cube). ``None`` means the default training patch: 64×64 in 2D, 32×32×32 in 3D.
    Each entry of ``img_size`` must be divisible by 16 (MONAI's fixed ViT patch size).
    """
    if img_size is None:
        size = _DEFAULT_PATCH[spatial_dims]
    else:
        size = ensure_tuple_rep(img_size, spatial_dims)
    return UNETR(
        in_channels=in_channels,
        out_channels=out_channels,
        img_size=size,
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        norm_name=norm,
        dropout_rate=dropout,
        spatial_dims=spatial_dims,
    )
