"""Build registered components by name: ``create_model`` and ``create_loss``.

The only way the runner gets a network or a loss. The registrations (:mod:`models.registry`) say
what a model accepts; this module checks a request against them, resolves a fixed input size,
wraps a 2D model for 3D data (2.5D), loads a pretrained encoder and attaches the declared deep
supervision to the built network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from models.deep_supervision import ATTRIBUTE as DEEP_SUPERVISION_ATTRIBUTE
from models.losses.algebra import WeightedSumLoss
from models.pretrained import load_encoder
from models.registry import (
    LOSSES,
    MODELS,
    SCHEMES,
    check_kwargs,
    parse_loss_name,
    resolve_model_kwargs,
)
from models.slices import wrap_2p5d

if TYPE_CHECKING:
    from models.schemes.base import TrainingScheme


class InputSizeError(ValueError):
    """A fixed-input-size model was called on an input of another size."""


def _guard_input_size(net: nn.Module, name: str, img_size: tuple[int, ...]) -> None:
    def check(_module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        if isinstance(x, torch.Tensor) and tuple(x.shape[2:]) != img_size:
            raise InputSizeError(
                f"model {name!r} accepts inputs of exactly {img_size} (img_size), got "
                f"{tuple(x.shape[2:])}; set data.patch_size to {img_size} or build it with img_size"
            )

    net.register_forward_pre_hook(check)
    net.img_size = img_size  # type: ignore[assignment]


def _img_size(name: str, meta: dict[str, Any], dims: int, size: Any) -> tuple[int, ...]:
    """``img_size`` of a fixed-size model: the given int / sequence or the registered default."""
    size = size or meta["default_img_size"].get(dims)
    if size is None:
        raise ValueError(f"model {name!r} has a fixed input size: give img_size")
    img_size = tuple(int(s) for s in ([size] * dims if isinstance(size, int) else size))[:dims]
    if len(img_size) != dims:
        raise ValueError(f"model {name!r}: img_size {img_size} does not have {dims} entries")
    return img_size


def create_model(
    name: str, *, spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any
) -> nn.Module:
    """Build the registered model ``name`` with its declared ``options`` in ``kwargs``.

    For a model registered with ``fixed_input_size``, ``img_size`` (an int or one entry per
    spatial axis) is resolved here and the network's forward raises :class:`InputSizeError`
    for any other input size. ``input_mode="2.5d"`` builds a 2D model for 3D data
    (:func:`models.slices.wrap_2p5d`); ``pretrained_encoder=PATH`` loads a safetensors / torch /
    Lightning checkpoint into the encoder the registration names (:func:`models.pretrained.load_encoder`).
    A model registered with ``deep_supervision`` gets it as ``net.segbench_deep_supervision`` (native mode).
    ``preset=NAME`` starts from the options of a preset the registration declares
    (:func:`models.registry.preset_kwargs`); the other ``kwargs`` override it. Without ``preset``
    the builder's defaults apply.

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
        models.registry.UnknownPresetError: a preset the model does not declare (one line).
        ValueError: an option the registration does not declare, a ``spatial_dims`` the model
            does not support, or a checkpoint that does not fit.
    """
    entry = MODELS.get(name)
    meta = entry.meta
    kwargs = resolve_model_kwargs(name, kwargs)
    input_mode = kwargs.pop("input_mode", "native")
    context = int(kwargs.pop("context", 1))
    pretrained = kwargs.pop("pretrained_encoder", None)
    check_kwargs("model", name, entry.factory, list(kwargs))
    if input_mode not in ("native", "2.5d"):
        raise ValueError(f"model {name!r}: input_mode {input_mode!r} is not 'native' or '2.5d'")
    two_half = input_mode == "2.5d"
    if two_half and (spatial_dims != 3 or 2 not in meta["dims"]):
        raise ValueError(f"model {name!r}: input_mode 2.5d needs a 2D model on 3D data")
    if not two_half and spatial_dims not in meta["dims"]:
        raise ValueError(f"model {name!r} supports spatial_dims {meta['dims']}, not {spatial_dims}")
    img_size = None
    if meta["fixed_input_size"]:
        img_size = _img_size(name, meta, 2 if two_half else spatial_dims, kwargs.get("img_size"))
        kwargs["img_size"] = img_size
    if two_half:
        net: nn.Module = wrap_2p5d(
            entry.factory, in_channels=in_channels, out_channels=out_channels, context=context, **kwargs
        )
    else:
        net = entry.factory(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs
        )
        if img_size is not None:
            _guard_input_size(net, name, img_size)
        if meta["deep_supervision"] is not None:
            setattr(net, DEEP_SUPERVISION_ATTRIBUTE, meta["deep_supervision"])
    if pretrained is not None:
        encoder = meta["encoder"]
        if two_half and encoder:
            encoder = f"net.{encoder}"
        load_encoder(net, pretrained, encoder_attr=encoder)
    return net


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss, or a weighted sum for a ``+`` composite name.

    For a single loss, ``kwargs`` go to its factory. For a composite, ``kwargs[term_name]`` (a
    dict) goes to that term's factory.
    """
    terms = parse_loss_name(name)
    if len(terms) == 1 and terms[0][0] == 1.0:
        return LOSSES.build(terms[0][1], **kwargs)
    unknown = set(kwargs) - {n for _, n in terms}
    if unknown:
        raise ValueError(
            f"loss {name!r}: options {sorted(unknown)} do not name a term; "
            "give options per term, e.g. {'cldice': {'alpha': 0.3}}"
        )
    return WeightedSumLoss([(w, n, LOSSES.build(n, **kwargs.get(n, {}))) for w, n in terms])


def create_scheme(name: str, **kwargs: Any) -> TrainingScheme:
    """Build the registered training scheme ``name`` with its declared ``options`` in ``kwargs``.

    The result goes to ``SegmentationModule(..., scheme=...)``. The registration
    (:func:`models.registry.register_scheme`) says which options exist and what the runner must
    provide (unlabelled patches, scribble labels, a required loss).

    Raises:
        bench.registry.UnknownNameError: an unknown name (one line listing the known ones).
        bench.errors.UserError: an option the scheme does not declare (one line naming the scheme
            and the option and listing the accepted ones), as ``create_model`` reports it.
    """
    entry = SCHEMES.get(name)
    check_kwargs("scheme", name, entry.factory, list(kwargs))
    return entry.factory(**kwargs)
