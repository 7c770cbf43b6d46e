"""``segbench bench gpu``: the name under which the CLI runs :mod:`bench.perf.gpu_check`."""

from bench.perf.gpu_check import main

__all__ = ["main"]
