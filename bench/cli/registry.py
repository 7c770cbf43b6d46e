"""The one command registry of ``segbench``: ``@register_command`` on a handler.

A command is a name, a one-line help, a function that adds its arguments to its sub-parser and a
handler ``(args) -> exit code``. :mod:`bench.cli.app` imports the command modules by name and
builds the parser from this registry; a module that fails to import stops the command line with
its error instead of dropping the command from ``segbench --help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from bench.errors import UserError

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]


class UsageError(UserError):
    """A bad command-line argument (a path that is a file where a folder is needed, ...)."""


@dataclass(frozen=True)
class Command:
    """One sub-command: ``segbench <name> ...``."""

    name: str
    help: str
    arguments: Arguments
    handler: Handler


COMMANDS: dict[str, Command] = {}
"""Registered commands in registration order (the order of ``segbench --help``)."""


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command without arguments of its own."""


def register_command(
    name: str, *, help: str, arguments: Arguments | None = None
) -> Callable[[Handler], Handler]:
    """Register ``handler`` as ``segbench <name>``; ``arguments(parser)`` adds its options."""

    def deco(handler: Handler) -> Handler:
        if name in COMMANDS:
            raise ValueError(f"command {name!r} is registered twice")
        COMMANDS[name] = Command(name, help, arguments or _no_arguments, handler)
        return handler

    return deco
