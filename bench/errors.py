"""The one base class of a user's mistake: :class:`UserError`.

The command line (:mod:`bench.cli.app`) prints a :class:`UserError` as one line naming the file or
field and exits with code 2. Every other exception is a bug in segbench: it is printed as
``internal error`` with its traceback, which is also saved to a file. Error classes that segbench
defines for bad input (``ConfigError``, ``EvaluationError``, ``DataArgumentError`` ...) count as
user errors too; a plain ``ValueError`` or ``KeyError`` from inside segbench does not.
"""

from __future__ import annotations


class UserError(ValueError):
    """A bad input (a file, a field, an argument) named in the message; never a bug."""
