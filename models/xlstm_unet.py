"""xLSTM family: a residual U-Net with Vision-LSTM (mLSTM) blocks on its coarse feature maps.

xLSTM-UNet: Chen et al., "xLSTM-UNet can be an Effective 2D & 3D Medical Image Segmentation
Backbone with Vision-LSTM (ViL) better than its Mamba Counterpart", 2024,
https://arxiv.org/abs/2407.01530. A CNN residual encoder/decoder (MONAI blocks, one
implementation for 2D and 3D: :class:`models.layers.mixer_unet.MixerUNet`) with ViL stacks
(:mod:`models.layers.mlstm`) over the flattened spatial tokens of the bottleneck and, optionally, after
chosen encoder levels. The mLSTM runs in pure PyTorch (its parallel form) and switches to the
``mlstm_kernels`` CUDA kernel (the ``xlstm`` package's) when it is installed and inputs are on
CUDA.

The same blocks on nnU-Net's residual U-Net (the paper's backbone), with presets sized as
published, are ``xlstm_bot_resenc`` / ``xlstm_enc_resenc`` (:mod:`models.resenc_hybrids`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from models.layers.mixer_unet import MixerUNet
from models.layers.mlstm import ViLStack
from models.registry import register_model

_variant = functools.partial(
    register_model,
    family="xlstm",
    paper="https://arxiv.org/abs/2407.01530",
    options="features vil_stages vil_depth num_heads expansion norm dropout backend chunk_size",
)


@_variant(
    "xlstm_unet_enc",
    model_args={"vil_stages": (2,)},
    description="xLSTM-UNet (encoder): ViL blocks after encoder level 2 and in the bottleneck",
)
@_variant(
    "xlstm_unet", description="xLSTM-UNet (bottleneck): residual U-Net + Vision-LSTM blocks in the bottleneck"
)
def xlstm_unet(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    features: Sequence[int] = (16, 32, 64, 128),
    vil_stages: Sequence[int] = (),
    vil_depth: int = 2,
    num_heads: int = 4,
    expansion: int = 2,
    norm: str = "instance",
    dropout: float = 0.0,
    backend: str = "auto",
    chunk_size: int = 256,
) -> MixerUNet:
    """Residual U-Net with ViL stacks in the bottleneck and after the ``vil_stages`` levels.

    ``xlstm_unet`` has ViL only at the bottleneck; ``xlstm_unet_enc`` defaults ``vil_stages`` to
    ``(2,)``: encoder level 2 (1/4 resolution) as well.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        features: channels per level; level ``j > 0`` halves the resolution, the last level is
            the bottleneck.
        vil_stages: extra encoder levels (indices into ``features`` below the bottleneck) that
            get a ViL stack. The mLSTM's compute grows with the square of a level's token
            count (memory linearly past ``chunk_size``), so keep to coarse levels.
        vil_depth: mLSTM blocks per ViL stack (scan direction alternates block to block).
        num_heads: mLSTM heads per block.
        expansion: mLSTM inner width factor.
        norm: MONAI norm name of the convolution blocks.
        dropout: dropout in the ViL blocks.
        backend: mLSTM backend (``auto``, ``torch``, ``kernel``; see :func:`models.layers.mlstm.mlstm`).
        chunk_size: token count above which the PyTorch mLSTM switches from the parallel to
            the chunkwise form (linear memory).
    """
    last = len(features) - 1
    if any(not 0 <= s < last for s in vil_stages):
        raise ValueError(f"vil_stages {tuple(vil_stages)} must index encoder levels 0..{last - 1}")
    mixers = {
        f"enc{j}": ViLStack(
            features[j],
            depth=vil_depth,
            num_heads=num_heads,
            expansion=expansion,
            dropout=dropout,
            backend=backend,
            chunk_size=chunk_size,
        )
        for j in sorted({*vil_stages, last})
    }
    return MixerUNet(spatial_dims, in_channels, out_channels, features=features, mixers=mixers, norm=norm)
