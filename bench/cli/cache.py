"""``segbench cache [--clear] [--cache-dir DIR]``: where the case cache lives, its size and entry
count; ``--clear`` deletes it (docs/cache.md). Split files next to it are never touched."""

from __future__ import annotations

import argparse

from bench.cli.registry import UsageError
from datamodules.diskcache import CACHE_ENV, cache_usage, clear_cache, default_cache_dir, format_bytes


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--clear`` and ``--cache-dir``."""
    p.add_argument(
        "--clear",
        action="store_true",
        help="delete the cached cases (<cache>/cases/); split files are kept",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help=f"the cache folder (default ${CACHE_ENV} or ~/.cache/segbench): a DataModule's cache_dir",
    )


def main(args: argparse.Namespace) -> int:
    """Print the case cache's folder, size and entry count, or clear it and say what was freed."""
    if args.cache_dir is not None and not args.cache_dir.strip():
        raise UsageError("--cache-dir: must not be empty")
    cache_dir = args.cache_dir or default_cache_dir()
    if args.clear:
        usage = clear_cache(cache_dir)
        print(f"cleared {usage.folder}: {usage.entries} case(s), freed {format_bytes(usage.bytes)}")
        return 0
    usage = cache_usage(cache_dir)
    print(f"case cache: {usage.folder}")
    print(f"size: {format_bytes(usage.bytes)}")
    print(f"entries: {usage.entries}")
    if usage.partial:
        print(f"partial: {usage.partial} unfinished write(s) of a killed process (removed by --clear)")
    return 0
