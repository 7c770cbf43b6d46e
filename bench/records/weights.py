"""A kept network's weights: ``model.safetensors``, written by the runner and read by ``segbench
predict`` / ``export``.

safetensors' check for tied weights reads each tensor's end through ``view(-1)``, which fails on
non-contiguous weights such as the channels-last weights of nnU-Net's 3D nets. Both directions
therefore put such a net in the contiguous layout first, in place: the values are the same, and a
net that was built channels-last stays correct (only its speed on CPU differs).
"""

from __future__ import annotations

from pathlib import Path

import torch


def _contiguous(net: torch.nn.Module) -> torch.nn.Module:
    if not all(t.is_contiguous() for t in net.state_dict().values()):
        net.to(memory_format=torch.contiguous_format)
    return net


def save_weights(net: torch.nn.Module, path: Path | str, metadata: dict[str, str]) -> None:
    """Write ``net``'s ``state_dict`` to the safetensors file ``path`` (tied weights stored once)."""
    from safetensors.torch import save_model

    save_model(_contiguous(net), str(path), metadata=metadata)


def load_weights(net: torch.nn.Module, path: Path | str, strict: bool = True) -> None:
    """Load the safetensors file ``path`` into ``net`` (safetensors' ``load_model``: the tied weights
    ``save_weights`` stored once are filled in; ``strict``: missing or unexpected keys raise)."""
    from safetensors.torch import load_model

    load_model(_contiguous(net), str(path), strict=strict)
