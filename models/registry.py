"""Model and loss registries: ``@register_model`` / ``@register_loss`` on a builder, and lookups.

This module is a leaf: it imports no plug-in and builds nothing (:mod:`models.factory` builds).
``models/__init__.py`` imports the plug-in files, whose decorators fill the registries. What the
runner needs to know about a component lives in its registration (timm's ``_registry``): a
model's family, dimensions, fixed input size, accepted options, variant arguments and
deep-supervision weights, a loss's dimensions and targets. Nothing is found by inspecting a
model builder's signature.

Models: a builder is called as ``builder(*, spatial_dims, in_channels, out_channels, **options)``
and returns an ``nn.Module`` mapping ``(B, in_channels, *spatial)`` to logits
``(B, out_channels, *spatial)`` (or a dict whose ``"logits"`` entry has that shape, plus auxiliary
outputs such as ``"aux"`` side logits or ``"landmarks"``).

Losses (mode: multiclass-softmax; binary tasks have C=2): ``loss(logits, target)`` with
``logits (B, C, *spatial)`` and ``target (B, 1, *spatial)`` int64 labels in ``[0, C)`` — or, for a
loss registered with ``targets="raters"``, ``target (B, R, *spatial)``: one label map per rater.
Composite losses are written ``"dice_ce+0.5*mip"``: terms joined by ``+``, each optionally
prefixed with ``weight*``; keyword arguments for a term go under its name
(``create_loss("dice+cldice", cldice={"alpha": 0.3})``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from bench.errors import UserError
from bench.registry import Entry, Registry

if TYPE_CHECKING:
    from models.deep_supervision import DeepSupervision

MODELS: Registry[nn.Module] = Registry("model")
LOSSES: Registry[nn.Module] = Registry("loss")
SCHEMES: Registry[nn.Module] = Registry("scheme")

FAMILIES = ("cnn", "transformer", "mamba", "xlstm", "gnn", "hybrid")
LOSS_TARGETS = ("label", "raters")
TRAIN_LABELS = ("dense", "scribble")
"""Training labels a scheme needs: ``dense`` (every voxel labelled) or ``scribble`` (class ids on
scribbled voxels, 255 elsewhere)."""

SEGBENCH_MODEL_OPTIONS = ("input_mode", "context", "pretrained_encoder", "preset")
"""Model options every model takes, handled by :func:`models.factory.create_model` rather than by
the builder: ``input_mode: 2.5d`` (a 2D model on 3D data, ``context`` neighbouring slices on each
side as channels), ``pretrained_encoder`` (a local checkpoint loaded into the registered encoder)
and ``preset`` (a named size the registration declares, :func:`preset_kwargs`)."""


class UnknownPresetError(UserError):
    """A ``preset`` that the model's registration does not declare."""


RESERVED_MODEL_ARGS = ("spatial_dims", "in_channels", "out_channels")
"""Builder arguments segbench sets from the dataset; never options."""


def register_model(
    name: str | None = None,
    *,
    family: str,
    dims: tuple[int, ...] = (2, 3),
    description: str = "",
    paper: str = "",
    options: str | Sequence[str] = (),
    small: Mapping[str, Any] | None = None,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    model_args: Mapping[str, Any] | None = None,
    fixed_input_size: bool = False,
    default_img_size: Mapping[int, tuple[int, ...]] | None = None,
    encoder: str | None = None,
    deep_supervision: DeepSupervision | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder (a function or an ``nn.Module`` class); stackable for variants.

    Args:
        name: registry key (defaults to the builder's name).
        family: architecture family tag, one of :data:`FAMILIES`.
        dims: spatial dimensions the architecture supports.
        description: one line shown by ``segbench models``.
        paper: link to the paper the model follows.
        options: the keyword options a user may set (``models: [{name: x, <option>: ...}]``),
            as names or one string of names separated by spaces (``"features norm"``); anything
            else is rejected by :func:`check_kwargs` and ``create_model`` with the list of these.
            ``img_size`` is added for a ``fixed_input_size`` model.
        small: builder kwargs of the small size that trains on CPU (the builder's own defaults
            are the paper's size); ``None`` when the defaults are already small. Every key must
            be an option. It is also the preset ``small``.
        presets: named configurations ``{preset: {option: value}}`` a sweep selects with
            ``preset: <name>`` (the published or reference-code sizes: ``paper``, a plan name);
            every key must be an option, and options given beside a preset override it. Two
            presets are derived when not declared: ``small`` (``small``, or the builder's
            defaults when ``small`` is ``None``) and, for a registration with ``small``,
            ``paper`` (the builder's defaults, which are then the paper's size).
        model_args: arguments that make this registration a variant of a shared builder
            (timm's ``model_args``): the builder is called with them, under any user options.
            One that is also an option is a default the user may override; one that is not is
            fixed for the variant.
        fixed_input_size: the network only accepts inputs of exactly ``img_size`` (learned
            position embeddings, as timm's ``fixed_input_size``). The builder then takes
            ``img_size``; the runner fills it with the training patch size and
            ``create_model`` guards the forward with an error naming the model and size.
        default_img_size: ``{spatial_dims: size}`` used when a fixed-size model is built
            without ``img_size``.
        encoder: attribute name of the encoder submodule (pretrained-encoder loading), if any.
        deep_supervision: the network returns side logits ``out["aux"]`` in training, trained by
            the run's own loss with these weights (:class:`models.deep_supervision.DeepSupervision`).

    Raises:
        ValueError: an unknown family, or ``small`` or a preset setting something that is not
            an option.
    """
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    names = tuple(options.replace(",", " ").split() if isinstance(options, str) else options)
    accepted = names + (("img_size",) if fixed_input_size and "img_size" not in names else ())
    args = dict(model_args or {})
    declared = {str(k): dict(v) for k, v in (presets or {}).items()}
    all_presets = {"small": dict(small or {}), **({"paper": {}} if small is not None else {}), **declared}

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        reserved = set(accepted) & set(RESERVED_MODEL_ARGS + SEGBENCH_MODEL_OPTIONS)
        undeclared = set().union(*all_presets.values()) - set(accepted)
        if reserved or undeclared:
            bad = sorted(reserved or undeclared)
            raise ValueError(
                f"model {key!r}: {bad} cannot be small sizes or options; presets set options only "
                f"(options: {accepted})"
            )
        factory = builder
        if args:  # a variant: the shared builder with this registration's arguments
            factory = functools.update_wrapper(functools.partial(builder, **args), builder)
        MODELS.register(
            key,
            description=description,
            family=family,
            dims=tuple(dims),
            paper=paper,
            options=accepted,
            small=dict(small or {}),
            presets=all_presets,
            model_args=args,
            fixed_input_size=bool(fixed_input_size),
            default_img_size={int(k): tuple(v) for k, v in (default_img_size or {}).items()},
            encoder=encoder,
            deep_supervision=deep_supervision,
        )(factory)
        return builder

    return deco


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one ``family``."""
    return [e.name for e in MODELS if family is None or e.meta["family"] == family]


def model_entry(name: str) -> Entry[nn.Module]:
    """The registry entry (builder and metadata) of ``name``."""
    return MODELS.get(name)


def preset_kwargs(name: str, preset: str | None) -> dict[str, Any]:
    """The options preset ``preset`` of model ``name`` sets (``{}`` for ``None``: the builder's defaults).

    Raises:
        UnknownPresetError: a preset the registration does not declare (one line listing them).
    """
    if preset is None:
        return {}
    presets = MODELS.get(name).meta["presets"]
    if preset not in presets:
        raise UnknownPresetError(f"model {name!r} has no preset {preset!r}; presets: {', '.join(presets)}")
    return dict(presets[preset])


def resolve_model_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with its ``preset`` expanded: the preset's options, overridden by the given ones.

    Without ``preset`` this is ``kwargs`` unchanged (the builder's defaults apply, as before
    presets existed, so a sweep that names none builds the same network).
    """
    rest = dict(kwargs)
    preset = rest.pop("preset", None)
    return {**preset_kwargs(name, preset), **rest}


def component_kwargs(factory: Callable[..., Any]) -> tuple[list[str], bool]:
    """Keyword arguments a factory's signature accepts (and whether it takes ``**kwargs``).

    Used for DataModule classes only; models declare their options at registration.
    """
    import inspect

    params = inspect.signature(factory).parameters.values()
    names = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def check_kwargs(
    kind: str, name: str, factory: Callable[..., Any], kwargs: Sequence[str], reserved: Sequence[str] = ()
) -> None:
    """Raise ``ValueError`` naming the first keyword that component ``name`` does not accept.

    For ``kind="model"`` the accepted keywords are the options declared at registration
    (``factory`` is not inspected, and a builder taking ``**kwargs`` is checked all the same);
    for other kinds they are read from ``factory``'s signature, and ``**kwargs`` accepts anything.
    """
    if kind in ("model", "scheme"):
        accepted = list((MODELS if kind == "model" else SCHEMES).get(name).meta["options"])
    else:
        accepted, var_kw = component_kwargs(factory)
        if var_kw:
            return
    accepted = [a for a in accepted if a not in reserved]
    for key in kwargs:
        if key not in accepted:
            raise UserError(
                f"{kind} {name!r} has no option {key!r}; accepted: {', '.join(accepted) or '(none)'}"
            )


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
            raise UserError(f"cannot parse loss term {part!r} in {name!r} (expected [weight*]name)")
        LOSSES.get(m["name"])  # raises with the list of known names
        weight = float(m["w"]) if m["w"] else 1.0
        if not (math.isfinite(weight) and weight > 0):
            raise UserError(
                f"loss {name!r}: the weight of {m['name']!r} must be finite and > 0, got {weight}"
            )
        terms.append((weight, m["name"]))
    return terms


def loss_targets(name: str) -> str:
    """``"raters"`` when any term of ``name`` needs every annotator's labels, else ``"label"``."""
    kinds = {LOSSES.get(n).meta["targets"] for _, n in parse_loss_name(name)}
    if len(kinds) > 1:
        raise UserError(f"loss {name!r} mixes single-label and multi-rater terms")
    return kinds.pop()


def loss_dims(name: str) -> tuple[int, ...]:
    """Spatial dimensions every term of ``name`` supports."""
    dims = {2, 3}
    for _, n in parse_loss_name(name):
        dims &= set(LOSSES.get(n).meta["dims"])
    return tuple(sorted(dims))


def list_losses() -> list[str]:
    """Registered loss names."""
    return LOSSES.names()


def loss_entry(name: str) -> Entry[nn.Module]:
    """Registry entry of a single (non-composite) loss."""
    return LOSSES.get(name)


# ---- training schemes ------------------------------------------------------------------------


def register_scheme(
    name: str | None = None,
    *,
    needs_unlabelled: bool = False,
    train_labels: str = "dense",
    loss: str | None = None,
    options: str | Sequence[str] = (),
    click_channels: int = 0,
    description: str = "",
    paper: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a training scheme (a ``models.schemes.base.TrainingScheme`` class or builder).

    What the runner needs lives here, never found by inspecting the scheme's code.

    Args:
        name: registry key (defaults to the builder's name).
        needs_unlabelled: the scheme adds nothing to supervised training without unlabelled
            patches (``batch["image_u"]``, present when ``labelled_fraction < 1``), so the planner
            rejects it for a run whose every training case is labelled. Schemes whose terms also
            apply to labelled images (mean teacher, DS6) use ``image_u`` when a batch has it and
            leave this False.
        train_labels: one of :data:`TRAIN_LABELS`: ``dense`` or ``scribble`` (255 = unlabelled).
        loss: a loss name the scheme requires (``scribble`` requires ``partial_ce``); ``None``
            when any registered loss fits.
        options: the keyword options a user may set (``schemes: [{name: x, <option>: ...}]``),
            as names or one string of names separated by spaces; anything else is rejected by
            ``create_scheme`` with the list of these.
        click_channels: extra input channels the network gets after the image's (``interactive``:
            2, the positive and negative click maps); the runner builds the network with
            ``in_channels + click_channels``.
        description: one line for listings.
        paper: link to the paper the scheme follows.
    """
    if train_labels not in TRAIN_LABELS:
        raise ValueError(f"train_labels {train_labels!r} is not one of {', '.join(TRAIN_LABELS)}")
    accepted = tuple(options.split() if isinstance(options, str) else options)
    if click_channels < 0:
        raise ValueError(f"click_channels must be >= 0, got {click_channels}")
    return SCHEMES.register(
        name,
        description=description,
        needs_unlabelled=bool(needs_unlabelled),
        train_labels=train_labels,
        loss=loss,
        options=accepted,
        click_channels=int(click_channels),
        paper=paper,
    )


def scheme_entry(name: str) -> Entry[nn.Module]:
    """The registry entry (class and metadata) of training scheme ``name``."""
    return SCHEMES.get(name)


def list_schemes() -> list[str]:
    """Registered training scheme names."""
    return SCHEMES.names()
