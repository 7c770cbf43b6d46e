"""``segbench`` command line: the parser built from the command registry, one-line errors for
user mistakes and a traceback for bugs.

A user mistake (:class:`bench.errors.UserError`, every error class segbench defines for bad input,
an ``OSError`` about a named file) ends in one line, ``segbench <command>: error: <file or field>:
<what is wrong>``, and exit code 2. Anything else is a bug in segbench: ``segbench <command>:
internal error``, the traceback, and the file it was saved to, exit code 3. ``segbench --debug``
shows the traceback of every error. The command modules are imported by name
(:data:`COMMAND_MODULES`); an import error in one of them is raised, so a broken command never
disappears silently from ``segbench --help``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from bench.cli.registry import COMMANDS
from bench.errors import UserError

COMMAND_MODULES = (
    "bench.cli.run",
    "bench.cli.tools",
    "bench.cli.listings",
    "bench.cli.explain",
    "bench.cli.protocols",
)
"""The modules whose ``@register_command`` handlers make up ``segbench``."""

SEGBENCH_PACKAGES = ("bench", "models", "datamodules")
"""Packages whose own error classes name bad input (see :func:`is_user_error`)."""

EXIT_USER, EXIT_INTERNAL = 2, 3


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the command stops where it is (records are written atomically,
    so nothing is half-written; a run that was training resumes from its last checkpoint)."""


_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
_received: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Interrupted(_SIGNALS.get(signum, str(signum)))


def _install_signal_handlers() -> dict[int, Any]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (where the default
    handlers are in place), so that ``finally`` blocks run and the command says what happened.
    Returns the handlers replaced (to restore)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig in _SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            old[sig] = signal.signal(sig, _on_signal)
    return old


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other user mistake (argparse
    prints the whole usage first); ``--help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every registered sub-command."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    p = OneLineParser(prog="segbench", description="Benchmark suite for medical image segmentation.")
    p.add_argument("--debug", action="store_true", help="print the traceback of every error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS.values():
        cmd.arguments(sub.add_parser(cmd.name, help=cmd.help))
    return p


def is_user_error(e: BaseException) -> bool:
    """True for a mistake in what the user gave: a :class:`UserError`, a ``ValueError`` /
    ``KeyError`` / ``OSError`` subclass that segbench defines (``ConfigError``, ``CaseLoadError``,
    ``DatasetNotFoundError`` ...), or an ``OSError`` that names its file. A plain ``ValueError`` /
    ``KeyError`` / ``TypeError`` raised anywhere is a bug."""
    if isinstance(e, UserError):
        return True
    cls = type(e)
    own = cls.__module__.split(".")[0] in SEGBENCH_PACKAGES
    if own and issubclass(cls, (ValueError, KeyError, OSError)):
        return True
    return isinstance(e, OSError) and e.filename is not None


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or e}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def crash_folder() -> Path:
    """Where internal errors are saved: ``$SEGBENCH_CRASH_DIR`` or ``~/.cache/segbench/crashes``."""
    env = os.environ.get("SEGBENCH_CRASH_DIR")
    return Path(env) if env else Path.home() / ".cache" / "segbench" / "crashes"


def _save_crash(command: str, argv: Sequence[str], text: str) -> Path | None:
    """Write the traceback with the command line to a new file; None when it cannot be written."""
    folder = crash_folder()
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{command}.txt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(f"segbench {' '.join(argv)}\n\n{text}")
    except OSError:
        return None
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run its command; returns the exit code (2: a user mistake, 3: a bug)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _received.clear()
    previous = _install_signal_handlers()
    try:
        return COMMANDS[args.command].handler(args)
    except (KeyboardInterrupt, SystemExit) as e:
        # Lightning turns an interrupt inside fit into SystemExit(1): a received signal decides
        if isinstance(e, SystemExit) and not _received:
            raise
        signum = _received[0] if _received else signal.SIGINT
        print(
            f"segbench {args.command}: interrupted ({_SIGNALS.get(signum, signum)}); finished runs and "
            "records are kept, and the same command again resumes the rest from their last checkpoints",
            file=sys.stderr,
        )
        return 128 + int(signum)
    except Exception as e:
        text = traceback.format_exc()
        if is_user_error(e):
            if args.debug:
                print(text, file=sys.stderr, end="")
            print(f"segbench {args.command}: error: {_message(e)}", file=sys.stderr)
            return EXIT_USER
        saved = _save_crash(args.command, argv, text)
        print(text, file=sys.stderr, end="")
        where = f"saved to {saved}" if saved else "could not be saved"
        print(
            f"segbench {args.command}: internal error (a bug in segbench, not in your input): "
            f"{type(e).__name__}: {_message(e)}; the traceback above is {where}",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
