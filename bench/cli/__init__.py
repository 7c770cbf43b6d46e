"""``segbench`` command line: one command registry (:mod:`bench.cli.registry`), the commands
(:mod:`bench.cli.run`, :mod:`bench.cli.tools`, :mod:`bench.cli.listings`) and the entry point
(:mod:`bench.cli.app`)."""

from bench.cli.app import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
