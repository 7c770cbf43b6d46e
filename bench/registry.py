"""A small name -> factory registry shared by models, losses and datasets.

Follows timm's ``register_model``: a decorator records a builder under its name together
with metadata (family, supported dimensions, a one-line description). Looking a name up that
is not registered raises a ``KeyError`` that lists every known name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered factory and what is known about it without building it."""

    name: str
    factory: Callable[..., T]
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class UnknownNameError(KeyError):
    """Raised for a name that is not in a registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps names to factories. ``kind`` names the registry in error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str | None = None, *, description: str = "", **meta: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REG.register("unet", family="cnn")`` over a builder function/class."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            key = name or factory.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            doc = description or (factory.__doc__ or "").strip().splitlines()[0:1]
            desc = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[key] = Entry(key, factory, desc, dict(meta))
            return factory

        return deco

    def get(self, name: str) -> Entry[T]:
        """Return the entry for ``name`` or raise :class:`UnknownNameError` listing known names."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def build(self, name: str, **kwargs: Any) -> T:
        """Call the factory registered as ``name`` with ``kwargs``."""
        return self.get(name).factory(**kwargs)

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[k] for k in self.names())

    def __len__(self) -> int:
        return len(self._entries)
