"""Load pretrained weights into a network's encoder from a local checkpoint file.

Formats (by content, not only by suffix):

- ``.safetensors``: a flat ``name -> tensor`` file (read with ``safetensors.torch.load_file``);
- a ``torch.save`` file (``.pt``/``.pth``/``.bin``) holding a flat ``name -> tensor`` dict, read with
  ``torch.load(weights_only=True)`` (no arbitrary code runs);
- a Lightning ``.ckpt``: the weights under ``"state_dict"``, the network's under the
  ``SegmentationModule``'s ``"net."`` prefix (other entries such as learnable loss weights are
  left out).

The encoder is ``getattr(net, encoder_attr)`` (the model's registry metadata ``encoder=``), or the
whole network when ``encoder_attr`` is None. A checkpoint that does not fit raises
:class:`CheckpointMismatchError` naming the file, the first few missing and unexpected keys, the
shape mismatches, and their counts.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

_LIGHTNING_NET_PREFIX = "net."
_SHOWN = 5  # keys listed per kind in an error message


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a ``name -> tensor`` mapping."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or shapes do not fit the module it is loaded into."""


def _listing(kind: str, keys: list[str]) -> str:
    more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return f"{len(keys)} {kind} ({', '.join(keys[:_SHOWN])}{more})"


def _read_raw(path: Path) -> Any:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover - safetensors is a dependency
            raise CheckpointError(f"{path}: reading .safetensors needs the safetensors package") from e
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): {first}") from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({e})") from e


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``name -> tensor`` weights of a checkpoint file (see the module docstring for formats).

    Raises:
        CheckpointError: when the file is missing or unreadable, or holds no tensor mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    raw = _read_raw(path)
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):  # Lightning .ckpt
        inner = raw["state_dict"]
        if any(k.startswith(_LIGHTNING_NET_PREFIX) for k in inner):
            raw = {k[len(_LIGHTNING_NET_PREFIX) :]: v for k, v in inner.items() if k.startswith("net.")}
        else:
            raw = inner
    if not isinstance(raw, Mapping) or not raw:
        raise CheckpointError(f"{path}: expected a non-empty mapping of parameter names to tensors")
    bad = [str(k) for k, v in raw.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not name -> tensor: {_listing('entries', bad)}")
    return dict(raw)


def _target(net: nn.Module, encoder_attr: str | None) -> nn.Module:
    if encoder_attr is None:
        return net
    try:
        return net.get_submodule(encoder_attr)  # dotted paths too: "net.encoder" of a 2.5D wrapper
    except AttributeError:
        raise ValueError(
            f"{type(net).__name__} has no encoder submodule {encoder_attr!r} to load into"
        ) from None


def load_encoder(
    net: nn.Module,
    path: str | Path,
    *,
    encoder_attr: str | None,
    prefix: str | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Copy a checkpoint's weights into ``net``'s encoder (in place).

    Args:
        net: the built network.
        path: checkpoint file (``.safetensors``, ``torch.save`` file or Lightning ``.ckpt``).
        encoder_attr: attribute (or dotted path) of ``net`` holding the encoder; None loads the
            whole network.
        prefix: only checkpoint keys starting with ``prefix`` are used, with it removed (e.g.
            ``"encoder."`` to take the encoder out of a whole-network checkpoint). When None and
            no checkpoint key is an encoder key, ``"<encoder_attr>."`` is tried.
        strict: every key of the encoder must be in the checkpoint and vice versa. With
            ``strict=False`` missing and unexpected keys are reported and skipped; shape
            mismatches and a checkpoint sharing no key with the encoder still raise.

    Returns:
        ``{"path", "encoder", "prefix", "loaded", "missing", "unexpected"}``: the file, the
        encoder attribute (None for the whole net), the prefix used and sorted key lists.

    Raises:
        CheckpointError: unreadable file or no keys under ``prefix``.
        CheckpointMismatchError: keys (strict) or shapes that do not fit.
        ValueError: ``encoder_attr`` is not a submodule of ``net``.
    """
    path = Path(path)
    target = _target(net, encoder_attr)
    weights = read_state_dict(path)
    own = target.state_dict()
    if prefix is None and encoder_attr is not None and not set(own) & set(weights):
        prefix = f"{encoder_attr}."  # a whole-network checkpoint: take its encoder's entries
        if not any(k.startswith(prefix) for k in weights):
            prefix = None
    if prefix:
        weights = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        if not weights:
            raise CheckpointError(f"{path}: no key starts with prefix {prefix!r}")
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(weights)
        if weights[k].shape != own[k].shape
    )
    where = f"{path} into {'the network' if encoder_attr is None else repr(encoder_attr)}"
    problems = [_listing("shape mismatches", shapes)] if shapes else []
    if strict:
        problems += [
            _listing(kind, keys) for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys
        ]
    if problems:
        raise CheckpointMismatchError(f"{where}: " + "; ".join(problems))
    loaded = sorted(set(own) & set(weights))
    if not loaded:
        raise CheckpointMismatchError(
            f"{where}: no key in common; {_listing('missing', missing)}; {_listing('unexpected', unexpected)}"
        )
    target.load_state_dict({k: weights[k] for k in loaded}, strict=not (missing or unexpected))
    return {
        "path": str(path),
        "encoder": encoder_attr,
        "prefix": prefix,
        "loaded": loaded,
        "missing": missing,
        "unexpected": unexpected,
    }
