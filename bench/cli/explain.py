"""``segbench explain RUN --case ID``: saliency maps of a kept model for one case (docs/explain.md)."""

from __future__ import annotations

import argparse

from bench.cli.registry import register_command
from bench.records.store import DEFAULT_RESULTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``segbench explain``."""
    from bench.evaluate.explain import BASELINES, BLUR_SIGMA, DEFAULT_METHODS, METHODS

    parser.add_argument("run", metavar="RUN", help="a run id (of --results) or a run's kept-model folder")
    parser.add_argument("--case", required=True, help="a case id of the run's dataset (any split)")
    parser.add_argument(
        "--results", default=DEFAULT_RESULTS, help="folder of records (default: %(default)s/)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma list of {', '.join(METHODS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--class", dest="target_class", type=int, default=None, help="class to explain (default: 1)"
    )
    parser.add_argument("--steps", type=int, default=32, help="integrated gradients' steps (default: 32)")
    parser.add_argument(
        "--baseline",
        default=BASELINES[0],
        choices=BASELINES,
        help="integrated gradients' baseline: the blurred image or zeros (default: %(default)s)",
    )
    parser.add_argument(
        "--blur-sigma",
        type=float,
        default=BLUR_SIGMA,
        help="sigma in voxels of the blur baseline (default: %(default)s)",
    )
    parser.add_argument(
        "--sanity", action="store_true", help="also run the weight-randomisation check (Adebayo et al.)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomised weights (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@register_command(
    "explain",
    help="saliency maps (Captum) of a kept model for one case, with a sanity check (docs/explain.md)",
    arguments=add_arguments,
)
def main(args: argparse.Namespace) -> int:
    """``segbench explain``: 0 when every map was written (a failed sanity check is reported, not an
    error)."""
    from bench.evaluate.explain import explain

    out = explain(
        args.run,
        args.case,
        results=args.results,
        methods=args.methods,
        target_class=args.target_class,
        n_steps=args.steps,
        baseline=args.baseline,
        blur_sigma=args.blur_sigma,
        sanity=args.sanity,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    info = out.info
    print(
        f"explain {info['run_id']} {info['case_id']}: class {info['class']}, region of "
        f"{info['region_voxels']} voxels ({info['region_from']}); {', '.join(out.maps)} "
        f"written to {out.folder}"
    )
    for method, check in (info.get("sanity") or {}).items():
        verdict = "passed" if check["passed"] else "FAILED"
        print(
            f"  sanity {method}: {verdict} (Spearman {check['spearman']:.3f}, SSIM {check['ssim']:.3f}, "
            f"passes when |rho| < {check['threshold']})"
        )
    return 0
