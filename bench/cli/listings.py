"""``segbench models | losses | datasets``: what is registered, as tables."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli.common import print_table
from bench.cli.registry import UsageError, register_command


def _parameters(name: str, spatial_dims: int, kwargs: dict[str, Any]) -> str:
    """``"1.23 M"``: parameters of ``name`` built with 1 input channel and 2 classes (on the meta
    device, so a paper-size 3D net costs no memory; on the CPU for a net that computes while built)."""
    from functools import partial

    import torch

    import models

    build = partial(
        models.create_model, name, spatial_dims=spatial_dims, in_channels=1, out_channels=2, **kwargs
    )
    try:
        with torch.device("meta"):
            net = build()
    except Exception:  # noqa: BLE001 - a model that computes while it is built (SwinUNETR)
        net = build()
    return f"{models.count_parameters(net) / 1e6:.2f} M"


def _describe(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "the builder's defaults"


@register_command("models", help="list registered models with family, dims, parameter counts and presets")
def models_command(args: argparse.Namespace) -> int:
    """Every registered model with its family, dims and parameter count (builder defaults, at its
    first dims), then one row per preset (``preset: <name>`` in a sweep) with its parameter count
    at the model's largest dims and the options it sets."""
    import models

    rows = []
    for entry in models.MODELS:
        dims = entry.meta["dims"]
        rows.append(
            (
                entry.name,
                entry.meta["family"],
                "/".join(f"{d}D" for d in dims),
                _parameters(entry.name, dims[0], {}),
                entry.description,
            )
        )
        for preset, kwargs in entry.meta["presets"].items():
            size = _parameters(entry.name, max(dims), {"preset": preset})
            rows.append((f"  preset {preset}", "", f"{max(dims)}D", size, _describe(kwargs)))
    print_table(("model", "family", "dims", "params", "description"), rows)
    print("\nparams: 1 input channel, 2 classes; a preset is selected with {name: <model>, preset: <name>}")
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
