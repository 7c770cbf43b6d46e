"""Model and loss registries: ``@register_model`` / ``@register_loss`` on a builder, and
``create_model`` / ``create_loss`` to build by name.

This module is a leaf: it imports no plug-in. ``models/__init__.py`` imports the plug-in files,
whose decorators fill the registries. What the runner needs to know about a component lives in
its registration (timm's ``_registry``), never found by inspecting signatures.

Models: every builder has the signature ``builder(*, spatial_dims, in_channels, out_channels,
**size_kw)`` and returns an ``nn.Module`` mapping ``(B, in_channels, *spatial)`` to logits
``(B, out_channels, *spatial)`` (or a dict whose ``"logits"`` entry has that shape, plus auxiliary
outputs such as ``"landmarks"``).

Losses (mode: multiclass-softmax; binary tasks have C=2): ``loss(logits, target)`` with
``logits (B, C, *spatial)`` and ``target (B, 1, *spatial)`` int64 labels in ``[0, C)`` — or, for a
loss registered with ``targets="raters"``, ``target (B, R, *spatial)``: one label map per rater.
Composite losses are written ``"dice_ce+0.5*mip"``: terms joined by ``+``, each optionally
prefixed with ``weight*``; keyword arguments for a term go under its name
(``create_loss("dice+cldice", cldice={"alpha": 0.3})``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from bench.registry import Entry, Registry

MODELS: Registry[nn.Module] = Registry("model")
LOSSES: Registry[nn.Module] = Registry("loss")

FAMILIES = ("cnn", "transformer", "mamba", "xlstm", "gnn", "hybrid")
LOSS_TARGETS = ("label", "raters")


def register_model(
    name: str | None = None,
    *,
    family: str,
    dims: tuple[int, ...] = (2, 3),
    description: str = "",
    paper: str = "",
    small: dict[str, Any] | None = None,
    fixed_input_size: bool = False,
    default_img_size: dict[int, tuple[int, ...]] | None = None,
    encoder: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder.

    Args:
        name: registry key (defaults to the function name).
        family: architecture family tag, one of :data:`FAMILIES`.
        dims: spatial dimensions the architecture supports.
        description: one line shown by ``segbench models``.
        paper: link to the paper the model follows.
        small: builder kwargs of the small size that trains on CPU (the builder's own defaults
            are the paper's size); ``None`` when the defaults are already small.
        fixed_input_size: the network only accepts inputs of exactly ``img_size`` (learned
            position embeddings, as timm's ``fixed_input_size``). The builder then takes
            ``img_size``; the runner fills it with the training patch size and
            :func:`create_model` guards the forward with an error naming the model and size.
        default_img_size: ``{spatial_dims: size}`` used when a fixed-size model is built
            without ``img_size``.
        encoder: attribute name of the encoder submodule (pretrained-encoder loading), if any.
    """
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    return MODELS.register(
        name,
        description=description,
        family=family,
        dims=tuple(dims),
        paper=paper,
        small=dict(small or {}),
        fixed_input_size=bool(fixed_input_size),
        default_img_size={int(k): tuple(v) for k, v in (default_img_size or {}).items()},
        encoder=encoder,
    )


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


SEGBENCH_MODEL_OPTIONS = ("input_mode", "context", "pretrained_encoder")
"""Model options every model takes, handled here rather than by the builder:
``input_mode: 2.5d`` (a 2D model on 3D data, ``context`` neighbouring slices on each side as
channels) and ``pretrained_encoder`` (a local checkpoint loaded into the registered encoder)."""


def create_model(
    name: str, *, spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any
) -> nn.Module:
    """Build the registered model ``name``.

    For a model registered with ``fixed_input_size``, ``img_size`` (an int or one entry per
    spatial axis) is resolved here and the network's forward raises :class:`InputSizeError`
    for any other input size. ``input_mode="2.5d"`` builds a 2D model for 3D data
    (:func:`models.slices.wrap_2p5d`); ``pretrained_encoder=PATH`` loads a safetensors / torch /
    Lightning checkpoint into the encoder the registration names (:func:`models.pretrained.load_encoder`).

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
        ValueError: when the model does not support ``spatial_dims``, or a checkpoint does not fit.
    """
    entry = MODELS.get(name)
    meta = entry.meta
    input_mode = kwargs.pop("input_mode", "native")
    context = int(kwargs.pop("context", 1))
    pretrained = kwargs.pop("pretrained_encoder", None)
    if input_mode not in ("native", "2.5d"):
        raise ValueError(f"model {name!r}: input_mode {input_mode!r} is not 'native' or '2.5d'")
    two_half = input_mode == "2.5d"
    if two_half and (spatial_dims != 3 or 2 not in meta["dims"]):
        raise ValueError(f"model {name!r}: input_mode 2.5d needs a 2D model on 3D data")
    if not two_half and spatial_dims not in meta["dims"]:
        raise ValueError(f"model {name!r} supports spatial_dims {meta['dims']}, not {spatial_dims}")
    img_size = None
    if meta.get("fixed_input_size"):
        dims = 2 if two_half else spatial_dims
        size = kwargs.get("img_size") or meta["default_img_size"].get(dims)
        if size is None:
            raise ValueError(f"model {name!r} has a fixed input size: give img_size")
        img_size = tuple(int(s) for s in ([size] * dims if isinstance(size, int) else size))[:dims]
        if len(img_size) != dims:
            raise ValueError(f"model {name!r}: img_size {img_size} does not have {dims} entries")
        kwargs["img_size"] = img_size
    if two_half:
        from models.slices import wrap_2p5d

        net = wrap_2p5d(entry.factory, in_channels=in_channels, out_channels=out_channels, context=context,
                        **kwargs)
    else:
        net = entry.factory(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, **kwargs
        )
        if img_size is not None:
            _guard_input_size(net, name, img_size)
    if pretrained is not None:
        from models.pretrained import load_encoder

        encoder = meta.get("encoder")
        if two_half and encoder:
            encoder = f"net.{encoder}"
        load_encoder(net, pretrained, encoder_attr=encoder)
    return net


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one ``family``."""
    return [e.name for e in MODELS if family is None or e.meta["family"] == family]


def model_entry(name: str) -> Entry[nn.Module]:
    """The registry entry (builder and metadata) of ``name``."""
    return MODELS.get(name)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---- losses --------------------------------------------------------------------------------

_TERM = re.compile(r"^\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[a-z0-9_]+)\s*$")


def register_loss(
    name: str | None = None,
    *,
    description: str = "",
    dims: tuple[int, ...] = (2, 3),
    targets: str = "label",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a loss factory returning an ``nn.Module`` with ``forward(logits, target)``.

    Args:
        dims: spatial dimensions the loss is defined for (``mip`` is 3D only).
        targets: ``"label"`` (``target (B, 1, *spatial)``) or ``"raters"`` (``(B, R, *spatial)``,
            every annotator's labels; the DataModule then loads all raters).
    """
    if targets not in LOSS_TARGETS:
        raise ValueError(f"targets {targets!r} is not one of {', '.join(LOSS_TARGETS)}")
    return LOSSES.register(name, description=description, dims=tuple(dims), targets=targets)


class WeightedSumLoss(nn.Module):
    """Weighted sum of losses sharing the ``(logits, target)`` convention."""

    def __init__(self, terms: list[tuple[float, str, nn.Module]]) -> None:
        super().__init__()
        self.weights = [w for w, _, _ in terms]
        self.names = [n for _, n, _ in terms]
        self.terms = nn.ModuleList([m for _, _, m in terms])

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = logits.new_zeros(())
        for w, term in zip(self.weights, self.terms, strict=True):
            total = total + w * term(logits, target)
        return total


def parse_loss_name(name: str) -> list[tuple[float, str]]:
    """Split ``"dice_ce+0.5*mip"`` into ``[(1.0, "dice_ce"), (0.5, "mip")]``.

    Raises:
        ValueError: for a malformed term or a weight that is not finite and > 0; KeyError for an
            unknown loss name.
    """
    terms = []
    for part in name.split("+"):
        m = _TERM.match(part)
        if m is None:
            raise ValueError(f"cannot parse loss term {part!r} in {name!r} (expected [weight*]name)")
        LOSSES.get(m["name"])  # raises with the list of known names
        weight = float(m["w"]) if m["w"] else 1.0
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(
                f"loss {name!r}: the weight of {m['name']!r} must be finite and > 0, got {weight}"
            )
        terms.append((weight, m["name"]))
    return terms


def loss_targets(name: str) -> str:
    """``"raters"`` when any term of ``name`` needs every annotator's labels, else ``"label"``."""
    kinds = {LOSSES.get(n).meta["targets"] for _, n in parse_loss_name(name)}
    if len(kinds) > 1:
        raise ValueError(f"loss {name!r} mixes single-label and multi-rater terms")
    return kinds.pop()


def loss_dims(name: str) -> tuple[int, ...]:
    """Spatial dimensions every term of ``name`` supports."""
    dims = {2, 3}
    for _, n in parse_loss_name(name):
        dims &= set(LOSSES.get(n).meta["dims"])
    return tuple(sorted(dims))


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


def list_losses() -> list[str]:
    """Registered loss names."""
    return LOSSES.names()


def loss_entry(name: str) -> Entry[nn.Module]:
    """Registry entry of a single (non-composite) loss."""
    return LOSSES.get(name)


def component_kwargs(factory: Callable[..., Any]) -> tuple[list[str], bool]:
    """Keyword arguments a builder accepts (and whether it takes ``**kwargs``), for validation."""
    import inspect

    params = inspect.signature(factory).parameters.values()
    names = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def check_kwargs(
    kind: str, name: str, factory: Callable[..., Any], kwargs: Sequence[str], reserved: Sequence[str] = ()
) -> None:
    """Raise ``ValueError`` naming the first keyword ``factory`` does not accept."""
    accepted, var_kw = component_kwargs(factory)
    if var_kw:
        return
    accepted = [a for a in accepted if a not in reserved]
    for key in kwargs:
        if key not in accepted:
            raise ValueError(
                f"{kind} {name!r} has no option {key!r}; accepted: {', '.join(accepted) or '(none)'}"
            )
