"""``python -m bench.cli ARGS``: the ``segbench`` console command."""

from bench.cli.app import entry

entry()
