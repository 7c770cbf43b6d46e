"""Checks of DataModule arguments, shared by the constructors and :meth:`SegDataModule.check_kwargs`.

Each check is a function ``(cls, value, args) -> problem | None`` registered under the argument
name in :data:`ARG_CHECKS` (``args`` holds every argument, so cross-field rules such as ``fold``
against ``num_folds`` can look them up). A dataset with arguments of its own adds checks in its
``extra_arg_checks`` class attribute. Nothing here touches the disk.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from datamodules.sampling import augment_problem

if TYPE_CHECKING:
    from datamodules.base import SegDataModule

ArgCheck = Callable[[type, Any, Mapping[str, Any]], "str | None"]
BAD_CASE_POLICIES = ("skip", "raise")
CONSENSUS = "consensus"
TRAIN_LABELS = ("dense", "scribble")
"""``train_labels`` values: the labels as released, or simulated scribbles (:mod:`datamodules.scribbles`)."""


class DataArgumentError(ValueError):
    """A DataModule argument is invalid; the message names the dataset and the argument."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def int_at_least(low: int) -> ArgCheck:
    """A check that the value is an integer ``>= low``."""

    def check(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
        return None if _is_int(v) and v >= low else f"must be an integer >= {low}, got {v!r}"

    return check


def one_of(choices: tuple[Any, ...]) -> ArgCheck:
    """A check that the value is one of ``choices``."""

    def check(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
        return None if v in choices else f"must be one of {list(choices)}, got {v!r}"

    return check


def spatial_size(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    """Check: None, or ``cls.spatial_dims`` integers ``>= 1`` (a patch or volume size)."""
    if v is None:
        return None
    dims = cls.spatial_dims
    if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) != dims:
        return f"needs {dims} entries (the dataset is {dims}D), got {v!r}"
    if not all(_is_int(p) and p >= 1 for p in v):
        return f"entries must be integers >= 1, got {list(v)}"
    return None


def _fg_oversample(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
    return None if ok else f"must be a number in [0, 1], got {v!r}"


def _fold(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    k = args.get("num_folds", 1)
    k = k if _is_int(k) and k >= 1 else 1
    return (
        None if _is_int(v) and 0 <= v < k else f"must be an integer in 0..{k - 1} (num_folds={k}), got {v!r}"
    )


def _annotator(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    if v is None or not cls.annotators:
        return None
    known = [*cls.annotators, CONSENSUS]
    return None if v in known else f"{v!r} is unknown; choose from {known}"


def _augment(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    return None if v is None else augment_problem(v)


def _scale(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    return None if ok else f"must be a number > 0, got {v!r}"


def _labelled_fraction(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1
    return None if ok else f"must be a number in (0, 1], got {v!r}"


def _optional(check: ArgCheck) -> ArgCheck:
    def wrapped(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
        return None if v is None else check(cls, v, args)

    return wrapped


def _bool(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def integer(cls: type, v: Any, args: Mapping[str, Any]) -> str | None:
    """Check: an integer (not a bool)."""
    return None if _is_int(v) else f"must be an integer, got {v!r}"


ARG_CHECKS: dict[str, ArgCheck] = {
    "download": _bool,
    "batch_size": int_at_least(1),
    "patch_size": spatial_size,
    "samples_per_epoch": int_at_least(1),
    "fg_oversample": _fg_oversample,
    "augment": _augment,
    "num_folds": int_at_least(1),
    "fold": _fold,
    "split_seed": integer,
    "seed": integer,
    "num_workers": int_at_least(0),
    "annotator": _annotator,
    "scale": _scale,
    "limit_cases": _optional(int_at_least(1)),
    "on_bad_case": _optional(one_of(BAD_CASE_POLICIES)),
    "multi_rater": _bool,
    "labelled_fraction": _labelled_fraction,
    "train_labels": one_of(TRAIN_LABELS),
}


def accepted_kwargs(cls: type[SegDataModule]) -> dict[str, Any]:
    """Every keyword the constructors of ``cls`` (and its bases) accept, with its default."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or not hasattr(klass, "extra_arg_checks"):  # only SegDataModule and subclasses
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                out[p.name] = p.default
    return out


def check_args(cls: type[SegDataModule], args: Mapping[str, Any]) -> None:
    """Run the check of every argument in ``args`` that has one.

    Raises:
        DataArgumentError: for the first invalid argument, naming it.
    """
    checks = {**ARG_CHECKS, **cls.extra_arg_checks}
    for name, value in args.items():
        check = checks.get(name)
        problem = check(cls, value, args) if check else None
        if problem:
            raise DataArgumentError(f"{cls.name or cls.__name__}: {name} {problem}")
