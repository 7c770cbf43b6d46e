"""``segbench`` command line: the parser built from the command registry, and one-line errors.

Every user mistake ends in one line, ``segbench <command>: error: <file or field>: <what is
wrong>``, and exit code 2; nothing a user can get wrong prints a traceback. The command modules
are imported by name (:data:`COMMAND_MODULES`); an import error in one of them is raised, so a
broken command never disappears silently from ``segbench --help``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence

from bench.cli.registry import COMMANDS
from bench.config import ConfigError

COMMAND_MODULES = ("bench.cli.run", "bench.cli.tools", "bench.cli.listings")
"""The modules whose ``@register_command`` handlers make up ``segbench``."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every registered sub-command."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    p = argparse.ArgumentParser(
        prog="segbench", description="Benchmark suite for medical image segmentation."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS.values():
        cmd.arguments(sub.add_parser(cmd.name, help=cmd.help))
    return p


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run its command; returns the exit code (2 for a user mistake)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].handler(args)
    except (ConfigError, KeyError, ValueError, OSError) as e:
        print(f"segbench {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segbench {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The console command: :func:`main`, then exit with its code.

    Before the interpreter exits, every object still alive is frozen (``gc.freeze``): its final
    collections then skip the objects that importing torch, Lightning and MONAI created. Files
    are closed and ``atexit`` hooks run as before; only the search for garbage cycles is skipped.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
