"""``segbench uncertainty`` and ``segbench multirater``: the uncertainty / OOD and multi-rater
protocols run on kept models (docs/uncertainty.md)."""

from __future__ import annotations

import argparse

from bench.cli.registry import register_command


def _uncertainty_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.evaluate.uncertainty_eval import add_arguments

    add_arguments(parser)


def _multirater_arguments(parser: argparse.ArgumentParser) -> None:
    from bench.evaluate.multirater_eval import add_arguments

    add_arguments(parser)


@register_command(
    "uncertainty",
    help="uncertainty scores, AURC, Spearman, OOD AUROC of kept models (docs/uncertainty.md)",
    arguments=_uncertainty_arguments,
)
def uncertainty(args: argparse.Namespace) -> int:
    """``segbench uncertainty``: 0 when the record and its tables were written."""
    from bench.evaluate.uncertainty_eval import main

    return main(args)


@register_command(
    "multirater",
    help="multi-rater metrics (CURVAS: ECE, volume CRPS, consensus Dice) (docs/uncertainty.md)",
    arguments=_multirater_arguments,
)
def multirater(args: argparse.Namespace) -> int:
    """``segbench multirater``: 0 when the record and its tables were written."""
    from bench.evaluate.multirater_eval import main

    return main(args)
