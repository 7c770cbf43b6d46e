"""OSS-Net: occupancy-network segmentation from a local-global encoding of each query point.

Reich et al., "OSS-Net: Memory Efficient High Resolution Semantic Segmentation of 3D Medical
Data", BMVC 2021, https://arxiv.org/abs/2110.10640 (Sec. 3, Fig. 2, Table 1; official code
``ChristophReich1996/OSS-Net``, setting "A", local patches).

The network predicts the class of one *query point* at a time, so memory grows with the
number of points evaluated together, not with the volume:

- **global encoding**: a residual CNN encoder on a downscaled copy of the input (four residual
  blocks with average-pool downsampling, 16-128 channels) ends in a 5x5x5 convolution to one
  channel; that low-resolution map, flattened, is the latent vector ``z`` (320 values for the
  paper's 8x8x5 map; segbench pools it to ``latent_shape`` so any patch size works);
- **local encoding**: the ``7^d`` patch of the full-resolution input around the query point,
  mapped by two ``7^d`` convolutions (``C -> C/2 -> 1``) and flattened;
- **occupancy decoder**: the point's normalised coordinates, local features and ``z``
  concatenated, through five residual MLP blocks (512 features) with conditional batch norm whose
  scale and shift are predicted from ``z``, and a linear layer to the class logits.

segbench convention: the forward maps a patch ``(B, C, *spatial)`` to dense logits by evaluating
the decoder at *every* voxel, ``chunk`` points at a time (with ``checkpoint``, each chunk's
activations are recomputed in the backward pass, so training memory is one chunk's). The paper
trains on sampled points (denser near borders) and infers coarse-to-fine; evaluating every point
of a patch is the dense limit of both. Softmax over ``out_channels`` replaces the per-class
sigmoid; PReLU replaces the learnable Pade activation units (PAU), which need a CUDA extension.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers import Norm, Pool
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.layers.conv import conv, conv_norm_act
from models.layers.padding import pad_to_multiple
from models.registry import register_model


class _ResidualDown(nn.Module):
    """OSS-Net encoder block: conv-BN-act-avgpool-conv-BN + avgpool(1x1 conv) shortcut, act."""

    def __init__(self, spatial_dims: int, cin: int, cout: int) -> None:
        super().__init__()
        pool = Pool[Pool.AVG, spatial_dims]
        self.main = nn.Sequential(
            conv(spatial_dims, cin, cout, kernel_size=3, padding=1, bias=False),
            Norm[Norm.BATCH, spatial_dims](cout),
            nn.PReLU(),
            pool(2),
            conv(spatial_dims, cout, cout, kernel_size=3, padding=1, bias=False),
            Norm[Norm.BATCH, spatial_dims](cout),
        )
        self.shortcut = nn.Sequential(
            conv(spatial_dims, cin, cout, kernel_size=1, bias=False) if cin != cout else nn.Identity(),
            pool(2),
        )
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, cin, *S)`` -> ``(B, cout, *S / 2)``."""
        return self.act(self.main(x) + self.shortcut(x))


class GlobalEncoder(nn.Module):
    """Downscaled input -> residual blocks -> 1-channel map -> latent ``(B, prod(latent_shape))``."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int],
        latent_shape: Sequence[int],
        downscale: int,
    ) -> None:
        super().__init__()
        self.downscale = downscale
        self.blocks = nn.Sequential(
            *(_ResidualDown(spatial_dims, a, b) for a, b in zip([in_channels, *channels[:-1]], channels))
        )
        self.final = conv_norm_act(spatial_dims, channels[-1], 1, 5, act="prelu", bias=True)
        self.latent_shape = tuple(latent_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, *spatial)`` -> ``z (B, prod(latent_shape))``; sizes are zero-padded on the high
        side to a multiple of ``downscale * 2 ** blocks``."""
        x = pad_to_multiple(x, self.downscale * 2 ** len(self.blocks))
        if self.downscale > 1:
            x = F.avg_pool3d(x, self.downscale) if x.dim() == 5 else F.avg_pool2d(x, self.downscale)
        m = self.final(self.blocks(x))
        m = (
            F.adaptive_avg_pool3d(m, self.latent_shape)
            if m.dim() == 5
            else F.adaptive_avg_pool2d(m, self.latent_shape)
        )
        return m.flatten(1)


class ConditionalBatchNorm(nn.Module):
    """BatchNorm over all features of all points (one statistic), scale/shift predicted from ``z``.

    ``h (N, F)``, ``z (N, L)`` -> ``(N, F)``; initialised to the identity (scale 1, shift 0).
    """

    def __init__(self, latent: int, features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(1, affine=False)
        self.gamma, self.beta = nn.Linear(latent, features), nn.Linear(latent, features)
        for lin, b in ((self.gamma, 1.0), (self.beta, 0.0)):
            nn.init.zeros_(lin.weight)
            nn.init.constant_(lin.bias, b)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``h (N, F)``, ``z (N, L)`` -> ``(N, F)``."""
        return self.gamma(z) * self.norm(h.unsqueeze(1)).squeeze(1) + self.beta(z)


class _CBNBlock(nn.Module):
    """Residual block: linear-CBN-act-linear-CBN + (linear) shortcut, act."""

    def __init__(self, fin: int, fout: int, latent: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(fin, fout), nn.Linear(fout, fout)
        self.cbn1, self.cbn2 = ConditionalBatchNorm(latent, fout), ConditionalBatchNorm(latent, fout)
        self.act1, self.act2 = nn.PReLU(), nn.PReLU()
        self.shortcut = nn.Linear(fin, fout) if fin != fout else nn.Identity()

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``h (N, fin)``, ``z (N, L)`` -> ``(N, fout)``."""
        y = self.cbn2(self.fc2(self.act1(self.cbn1(self.fc1(h), z))), z)
        return self.act2(y + self.shortcut(h))


class OSSNet(nn.Module):
    """Global encoder + local patch mapping + CBN occupancy decoder, evaluated densely in chunks.

    Args:
        spatial_dims: 2 or 3.
        in_channels, out_channels: image channels and classes (incl. background).
        encoder_channels: channels of the residual encoder blocks (each halves the size).
        latent_shape: size of the encoder's 1-channel output map (its flattening is ``z``).
        downscale: the encoder sees the input average-pooled by this factor.
        patch_size: side of the local patch around each query point (odd).
        decoder_features, decoder_blocks: width and number of residual CBN blocks.
        chunk: query points evaluated together.
        use_checkpoint: recompute each chunk in the backward pass (training memory of one chunk).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        encoder_channels: Sequence[int],
        latent_shape: Sequence[int],
        downscale: int,
        patch_size: int,
        decoder_features: int,
        decoder_blocks: int,
        chunk: int,
        use_checkpoint: bool,
    ) -> None:
        super().__init__()
        if patch_size % 2 != 1 or len(latent_shape) != spatial_dims:
            raise ValueError(f"oss_net: patch_size must be odd and latent_shape have {spatial_dims} entries")
        self.encoder = GlobalEncoder(spatial_dims, in_channels, encoder_channels, latent_shape, downscale)
        latent = math.prod(latent_shape)
        mid, pad = max(in_channels // 2, 1), patch_size // 2
        self.patch_mapping = nn.Sequential(
            conv(spatial_dims, in_channels, mid, kernel_size=patch_size, padding=pad),
            nn.PReLU(),
            conv(spatial_dims, mid, 1, kernel_size=patch_size, padding=pad),
            nn.PReLU(),
        )
        fin = spatial_dims + patch_size**spatial_dims + latent
        widths = [fin] + [decoder_features] * decoder_blocks
        self.blocks = nn.ModuleList(_CBNBlock(a, b, latent) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Linear(decoder_features, out_channels, bias=False)
        self.patch_size, self.chunk, self.use_checkpoint = patch_size, chunk, use_checkpoint
        offsets = torch.tensor(list(itertools.product(range(patch_size), repeat=spatial_dims)))
        self.register_buffer("offsets", offsets, persistent=False)  # (P^d, d)

    def decode(self, coords: torch.Tensor, patches: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Occupancy logits of ``N`` points of one image.

        Args:
            coords: ``(N, d)`` in ``[-1, 1]``.
            patches: ``(N, C, *(P,) * d)`` local input patches.
            z: ``(L,)`` latent vector of the image.

        Returns:
            ``(N, out_channels)`` logits.
        """
        zz = z.expand(coords.shape[0], -1)
        h = torch.cat([coords, self.local_features(patches), zz], dim=1)
        for block in self.blocks:
            h = block(h, zz)
        return self.head(h)

    def local_features(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch mapping ``(N, C, *(P,) * d)`` -> ``(N, P^d)``: conv-PReLU-conv-PReLU on each patch.

        Each zero-padded convolution of a fixed-size patch is a linear map, applied here as one
        matrix (built by convolving the basis patches) - the same numbers as running the
        convolutions on every patch, much faster on many tiny patches.
        """
        h = patches.flatten(1)
        for layer, act in (
            (self.patch_mapping[0], self.patch_mapping[1]),
            (self.patch_mapping[2], self.patch_mapping[3]),
        ):
            n_in = h.shape[1]
            basis = torch.eye(n_in, device=h.device, dtype=h.dtype).view(
                n_in, layer.in_channels, *patches.shape[2:]
            )
            matrix = layer._conv_forward(basis, layer.weight, None).flatten(1)  # (C_in P^d, C_out P^d)
            h = act(h @ matrix + layer.bias.repeat_interleave(matrix.shape[1] // layer.out_channels))
        return h

    def _patches(self, padded: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``padded (C, *sp_padded)``, voxel indices ``idx (N, d)`` -> ``(N, C, *(P,) * d)``."""
        where = (idx[:, None, :] + self.offsets[None]).unbind(-1)  # d x (N, P^d)
        return (
            padded[(slice(None), *where)]
            .movedim(0, 1)
            .reshape(idx.shape[0], padded.shape[0], *[self.patch_size] * idx.shape[1])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, *spatial)`` -> dense logits ``(B, out_channels, *spatial)``."""
        spatial = x.shape[2:]
        z = self.encoder(x)
        p = self.patch_size // 2
        padded = F.pad(x, [p] * (2 * len(spatial)))
        grid = torch.stack(
            torch.meshgrid(*(torch.arange(s, device=x.device) for s in spatial), indexing="ij"), -1
        )
        idx = grid.reshape(-1, len(spatial))
        scale = torch.tensor([max(s - 1, 1) for s in spatial], device=x.device, dtype=x.dtype)
        coords = idx.to(x.dtype) / scale * 2 - 1
        out = []
        for b in range(x.shape[0]):
            parts = []
            for start in range(0, idx.shape[0], self.chunk):
                sl = slice(start, start + self.chunk)
                patches = self._patches(padded[b], idx[sl])
                if self.use_checkpoint and self.training and torch.is_grad_enabled():
                    parts.append(checkpoint(self.decode, coords[sl], patches, z[b], use_reentrant=False))
                else:
                    parts.append(self.decode(coords[sl], patches, z[b]))
            out.append(torch.cat(parts).T.reshape(-1, *spatial))
        return torch.stack(out)


@register_model(
    "oss_net",
    family="hybrid",
    dims=(2, 3),
    description="OSS-Net: occupancy decoder on a local patch + global latent per voxel (chunked)",
    paper="https://arxiv.org/abs/2110.10640",
    small={
        "encoder_channels": (8, 16),
        "latent_shape": (2, 2, 2),
        "downscale": 1,
        "decoder_features": 32,
        "decoder_blocks": 2,
    },
    options=(
        "encoder_channels latent_shape downscale patch_size decoder_features decoder_blocks chunk "
        "use_checkpoint"
    ),
    encoder="encoder",
)
def oss_net(
    *,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    encoder_channels: Sequence[int] = (16, 32, 64, 128),
    latent_shape: Sequence[int] | None = None,
    downscale: int = 2,
    patch_size: int = 7,
    decoder_features: int = 512,
    decoder_blocks: int = 5,
    chunk: int = 4096,
    use_checkpoint: bool = True,
) -> nn.Module:
    """OSS-Net (setting A): paper widths; ``latent_shape`` defaults to 8x8x5 (3D) / 16x20 (2D), 320 values.

    For 2D, the small size's ``latent_shape`` is cut to its first two entries.
    """
    if latent_shape is None:
        latent_shape = (8, 8, 5) if spatial_dims == 3 else (16, 20)
    latent_shape = tuple(latent_shape)[:spatial_dims]
    return OSSNet(
        spatial_dims,
        in_channels,
        out_channels,
        encoder_channels=tuple(encoder_channels),
        latent_shape=latent_shape,
        downscale=downscale,
        patch_size=patch_size,
        decoder_features=decoder_features,
        decoder_blocks=decoder_blocks,
        chunk=chunk,
        use_checkpoint=use_checkpoint,
    )
