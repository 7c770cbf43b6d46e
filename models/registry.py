"""Model registry: ``@register_model`` on a builder, ``create_model`` to build by name.

Every builder has the signature ``builder(*, spatial_dims, in_channels, out_channels, **size_kw)``
and returns an ``nn.Module`` mapping ``(B, in_channels, *spatial)`` to logits
``(B, out_channels, *spatial)`` (or a dict whose ``"logits"`` entry has that shape, plus
auxiliary outputs such as ``"landmarks"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from bench.registry import Entry, Registry

MODELS: Registry[nn.Module] = Registry("model")


def register_model(
    name: str | None = None,
    *,
    family: str,
    dims: tuple[int, ...] = (2, 3),
    description: str = "",
    paper: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder.

    Args:
        name: registry key (defaults to the function name).
        family: architecture family tag (``cnn``, ``transformer``, ``mamba``, ``xlstm``, ``gnn``).
        dims: spatial dimensions the architecture supports.
        description: one line shown by ``segbench models``.
        paper: link to the paper the model follows.
    """
    return MODELS.register(name, description=description, family=family, dims=tuple(dims), paper=paper)


def create_model(
    name: str, *, spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any
) -> nn.Module:
    """Build the registered model ``name``.

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
        ValueError: when the model does not support ``spatial_dims``.
    """
    entry = MODELS.get(name)
    if spatial_dims not in entry.meta["dims"]:
        raise ValueError(f"model {name!r} supports spatial_dims {entry.meta['dims']}, not {spatial_dims}")
    return entry.factory(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs
    )


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one ``family``."""
    return [e.name for e in MODELS if family is None or e.meta["family"] == family]


def model_entry(name: str) -> Entry[nn.Module]:
    """The registry entry (builder and metadata) of ``name``."""
    return MODELS.get(name)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
