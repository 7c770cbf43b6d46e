"""2.5D input mode: any 2D network on 3D volumes, with neighbouring slices as extra channels.

Every slice ``d`` along the last spatial axis becomes one 2D sample whose channels are the
slices ``d - k .. d + k`` of every input channel (slices beyond the volume's edge repeat the edge
slice). This is the channel-stacking 2.5D input; multi-path systems such as Xue et al. 2020
(NeuroImage: Clinical, https://doi.org/10.1016/j.nicl.2019.102118) run 2D U-Nets per plane and
fuse their outputs with a 3D network, which this wrapper does not do. The 2D network runs on
all slices as one batch, in chunks of ``chunk_size`` slices so that memory stays bounded; its
``(out_channels, H, W)`` outputs are stacked back along the last axis.

Channel order of a 2D sample: ``[c0 @ d-k, ..., c0 @ d+k, c1 @ d-k, ...]`` (input channel major).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class SliceStack2p5D(nn.Module):
    """Runs a 2D net built with ``in_channels * (2 * context + 1)`` inputs slice by slice on 3D data.

    Args:
        net: 2D network mapping ``(N, in_channels * (2k + 1), H, W)`` to logits
            ``(N, out_channels, H, W)`` (or a dict with ``"logits"``; other entries are dropped).
        in_channels: channels of the 3D input.
        context: ``k``, neighbouring slices on each side (0 gives plain slice-wise 2D).
        chunk_size: slices per 2D forward pass.

    Note:
        A 2D net with batch norm in training mode normalises over each chunk's slices, so its
        training output depends on ``chunk_size``; instance norm (segbench's default) does not.

    Raises:
        ValueError: for ``context < 0`` or ``chunk_size < 1``.
    """

    def __init__(self, net: nn.Module, *, in_channels: int, context: int, chunk_size: int = 32) -> None:
        super().__init__()
        if context < 0:
            raise ValueError(f"2.5d input: context must be >= 0 slices, got {context}")
        if chunk_size < 1:
            raise ValueError(f"2.5d input: chunk_size must be >= 1, got {chunk_size}")
        self.net = net
        self.in_channels = in_channels
        self.context = context
        self.chunk_size = chunk_size

    def neighbour_index(self, depth: int, device: torch.device | None = None) -> torch.Tensor:
        """``(depth, 2k + 1)`` slice indices feeding each output slice, clamped to ``[0, depth)``."""
        offsets = torch.arange(-self.context, self.context + 1, device=device)
        return (torch.arange(depth, device=device)[:, None] + offsets[None]).clamp(0, depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, H, W, D)`` -> logits ``(B, out_channels, H, W, D)``.

        Raises:
            ValueError: for an input that is not 5D or has the wrong channel count.
        """
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"2.5d input: expected (B, {self.in_channels}, H, W, D), got {tuple(x.shape)}")
        b, c, h, w, d = x.shape
        slices = x.movedim(-1, 1)  # (B, D, C, H, W), a view
        index = self.neighbour_index(d, x.device)  # (D, 2k + 1)
        flat = torch.arange(b * d, device=x.device)
        outs = []
        for rows in flat.split(self.chunk_size):
            stack = slices[(rows // d)[:, None], index[rows % d]]  # (n, 2k + 1, C, H, W)
            stack = stack.transpose(1, 2).reshape(rows.numel(), -1, h, w)  # channel-major
            out = self.net(stack)
            outs.append(out["logits"] if isinstance(out, dict) else out)
        y = torch.cat(outs)  # (B * D, out, H, W)
        return y.reshape(b, d, *y.shape[1:]).movedim(1, -1)


def wrap_2p5d(
    builder_fn: Callable[..., nn.Module],
    *,
    in_channels: int,
    out_channels: int,
    context: int,
    chunk_size: int = 32,
    **kw: Any,
) -> SliceStack2p5D:
    """Build a 2D model for 3D data in 2.5D mode.

    Args:
        builder_fn: a registered model builder (``builder(*, spatial_dims, in_channels,
            out_channels, **kw)``); it is called with ``spatial_dims=2`` and
            ``in_channels * (2 * context + 1)`` input channels.
        in_channels: channels of the 3D input.
        out_channels: classes.
        context: neighbouring slices on each side.
        chunk_size: slices per 2D forward pass.
        **kw: size arguments of the builder. A 3D ``img_size`` (patch size ``(H, W, D)``) is cut
            to the in-plane ``(H, W)``.

    Returns:
        the wrapped network; its 2D net is ``.net`` (so a registered ``encoder`` attribute ``e``
        is ``"net.e"`` for :func:`models.pretrained.load_encoder`).
    """
    if context < 0:
        raise ValueError(f"2.5d input: context must be >= 0 slices, got {context}")
    if "img_size" in kw and len(kw["img_size"]) == 3:
        kw = {**kw, "img_size": tuple(kw["img_size"][:2])}
    net = builder_fn(
        spatial_dims=2, in_channels=in_channels * (2 * context + 1), out_channels=out_channels, **kw
    )
    return SliceStack2p5D(net, in_channels=in_channels, context=context, chunk_size=chunk_size)
