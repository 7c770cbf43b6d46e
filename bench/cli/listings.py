"""``segbench models | losses | datasets``: what is registered, as tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.common import print_table
from bench.cli.registry import UsageError, register_command


@register_command("models", help="list registered models with family, dims and parameter counts")
def models_command(args: argparse.Namespace) -> int:
    """Every registered model with its family, dims and parameter counts (default and small size)."""
    import models

    rows = []
    for entry in models.MODELS:
        dims = entry.meta["dims"]
        size = {}
        for label, kw in (("default", {}), ("small", entry.meta.get("small") or None)):
            if kw is None:
                size[label] = "–"
                continue
            net = models.create_model(entry.name, spatial_dims=dims[0], in_channels=1, out_channels=2, **kw)
            size[label] = f"{models.count_parameters(net) / 1e6:.2f} M"
        rows.append(
            (
                entry.name,
                entry.meta["family"],
                "/".join(f"{d}D" for d in dims),
                size["default"],
                size["small"],
                entry.description,
            )
        )
    print_table(("model", "family", "dims", "params", "params (small)", "description"), rows)
    return 0


@register_command("losses", help="list registered losses")
def losses_command(args: argparse.Namespace) -> int:
    """Every registered loss with its dims and target kind."""
    from models import LOSSES

    print_table(
        ("loss", "dims", "targets", "description"),
        [
            (e.name, "/".join(f"{d}D" for d in e.meta["dims"]), e.meta.get("targets", "label"), e.description)
            for e in LOSSES
        ],
    )
    return 0


def _datasets_arguments(ds: argparse.ArgumentParser) -> None:
    ds.add_argument(
        "--inspect",
        metavar="ROOT|NAME",
        default=None,
        help="fingerprint a dataset (shapes, spacings, intensities, classes) and suggest a sweep snippet "
        "(docs/datasets.md)",
    )
    ds.add_argument("--json", action="store_true", help="with --inspect: print the fingerprint as JSON")
    ds.add_argument(
        "--root",
        default=None,
        help="a folder holding release folders (DRIVE/, HRF/ ...) to check presence in; default: "
        "$SEGBENCH_DATA, else $SEGBENCH_SHARED_DATA, else ~/.cache/segbench/data",
    )


@register_command(
    "datasets",
    help="list datasets with task, dims, cases, licence, local presence",
    arguments=_datasets_arguments,
)
def datasets_command(args: argparse.Namespace) -> int:
    """Every registered dataset with dims, case count, local presence, licence and task."""
    from datamodules import DATASETS
    from datamodules.base import data_folder

    if args.inspect:
        from datamodules import fingerprint

        return fingerprint.main([args.inspect, *(["--json"] if args.json else [])])
    base = Path(args.root) if args.root else data_folder()
    if args.root and not base.is_dir():
        raise UsageError(f"--root {args.root}: no such folder")
    rows = []
    for e in DATASETS:
        cls = e.factory
        if e.meta.get("needs_root"):  # a reader of a user's own files
            rows.append(
                (e.name, "2D/3D" if e.name != "image_folder" else "2D", "–", "your root", "–", cls.task)
            )
            continue
        root = base / cls.folder if getattr(cls, "folder", "") else None
        info = cls.dataset_info(root)
        embedded = not info["urls"] and not getattr(cls, "folder", "")
        local = "embedded" if embedded else ("yes" if info["present"] else "no")
        licence = info["license"] or "–"
        rows.append(
            (
                e.name,
                f"{info['spatial_dims']}D",
                str(info["num_cases"] or "–"),
                local,
                licence if len(licence) <= 50 else licence[:49] + "…",
                info["task"],
            )
        )
    print_table(("dataset", "dims", "cases", "local", "license", "task"), rows)
    print(f"\nlocal: looked for each release folder under {base}")
    return 0
