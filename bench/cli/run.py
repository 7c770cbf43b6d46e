"""``segbench run`` (a sweep, locally or on SLURM) and ``segbench leaderboard``."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.cli.common import (
    add_results_arg,
    add_sweep_args,
    check_data,
    leaderboard_file,
    print_summary,
    results_folder,
    warn_kept_weights,
    write_board,
)
from bench.cli.registry import UsageError, register_command
from bench.cluster.options import add_arguments as add_slurm_arguments
from bench.cluster.options import check_local_options
from bench.config import DEFAULT_SWEEP
from bench.records.provenance import SIDE_BY_SIDE_ENV


def _run_arguments(r: argparse.ArgumentParser) -> None:
    add_sweep_args(r)
    r.add_argument(
        "--leaderboard",
        default=None,
        help="where to render the leaderboard (default: leaderboard.md inside the results folder)",
    )
    r.add_argument(
        "--force",
        action="store_true",
        help="re-run runs that are already done (their records move to results/.superseded/)",
    )
    r.add_argument(
        "--reason",
        default=None,
        help="with --force: why the done runs are re-run (kept in results/.superseded/index.jsonl)",
    )
    r.add_argument("--no-leaderboard", action="store_true", help="do not render the leaderboard")
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the sweep and print each run id with done / failed / to run; train nothing",
    )
    r.add_argument("--print-default", action="store_true", help="print the built-in sweep file and exit")
    r.add_argument(
        "--side-by-side",
        type=int,
        default=1,
        metavar="K",
        help="local: K processes train the sweep's runs at once, each claiming its own (e.g. small "
        "runs sharing one GPU); their logs go to RESULTS/.work/side-by-side/, the leaderboard is "
        "rendered once, after all",
    )
    add_slurm_arguments(r)


def _start_side_by_side(args: argparse.Namespace, results: Path, n: int) -> list[subprocess.Popen]:
    """``n`` more ``segbench run`` processes on the same sweep, overrides and results folder (quiet,
    no leaderboard); the run claims (``results/.claims``) give each run to exactly one process."""
    if n <= 0:
        return []
    env = {**os.environ, SIDE_BY_SIDE_ENV: str(n + 1)}  # the children's records say so
    logs = results / ".work" / "side-by-side"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bench.cli", "run", *([args.sweep] if args.sweep else [])]
    cmd += ["--results", str(results), "--quiet", "--no-leaderboard"]
    cmd += [x for o in args.override for x in ("-o", o)]
    children = []
    for i in range(1, n + 1):
        with open(logs / f"worker-{i}.log", "w") as log:
            children.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    print(f"segbench run: {n + 1} processes side by side (logs of the other {n}: {logs}/)", flush=True)
    return children


@contextlib.contextmanager
def _side_by_side_env(processes: int) -> Iterator[None]:
    """Inside the block, this process's records say it trained among ``processes`` runner
    processes (``$SEGBENCH_SIDE_BY_SIDE``); restored after, so that a later run in the same
    Python process does not claim it. One process alone leaves the variable as it found it (a
    child started by ``--side-by-side`` keeps its parent's count)."""
    before = os.environ.get(SIDE_BY_SIDE_ENV)
    if processes > 1:
        os.environ[SIDE_BY_SIDE_ENV] = str(processes)
    try:
        yield
    finally:
        if processes > 1 and before is None:
            del os.environ[SIDE_BY_SIDE_ENV]
        elif processes > 1:
            os.environ[SIDE_BY_SIDE_ENV] = before


def _wait_for_claims(results: Path, run_ids: list[str], children: list[subprocess.Popen]) -> None:
    """Wait (up to :data:`SIDE_BY_SIDE_WAIT_S`) until every child holds the claim of a run or has
    exited, before this process takes its own: else a fast run started here while the children
    import torch could take all the runs, and the children none."""
    from bench.cluster.queue import claim_holder

    deadline = time.monotonic() + SIDE_BY_SIDE_WAIT_S
    while time.monotonic() < deadline:
        holders = {(claim_holder(results, r) or {}).get("pid") for r in run_ids}
        if all(c.pid in holders or c.poll() is not None for c in children):
            return
        time.sleep(0.2)


SIDE_BY_SIDE_WAIT_S = 120.0
"""How long ``--side-by-side`` waits for its children to claim their first runs."""


@register_command(
    "run", help="run a sweep (default: the built-in sweep on embedded data)", arguments=_run_arguments
)
def run_command(args: argparse.Namespace) -> int:
    """Validate every run, then train the ones not done (or submit them to SLURM); render the board."""
    if args.print_default:
        print(DEFAULT_SWEEP.read_text(), end="")
        return 0
    results = results_folder(args.results, must_exist=False)
    board = None if args.no_leaderboard else leaderboard_file(args.leaderboard, results)
    what = args.sweep or "the built-in sweep"
    if not args.quiet:
        print(f"segbench run: {what} into {results}/ (checking the sweep and its data)", flush=True)
    from bench.config import load_sweep
    from bench.run import plan_sweep, run_state, run_sweep

    sweep = load_sweep(args.sweep, args.override)
    runs = plan_sweep(sweep)  # every run validated before the first one starts
    check_data(runs)  # every dataset root, before anything trains
    states = [run_state(results, cfg) for cfg in runs]  # each record read once, before any run
    if args.dry_run:
        for cfg, state in zip(runs, states):
            print(f"{state:7s} {cfg.run_id}")
        counts = {s: states.count(s) for s in ("done", "failed", "to run")}
        print(
            f"{len(states)} run(s): {counts['done']} done, {counts['failed']} failed, "
            f"{counts['to run']} to run (dry run: nothing trained)"
        )
        return 0
    warn_kept_weights([cfg for cfg, st in zip(runs, states) if st != "done" or args.force], results)
    if args.executor == "slurm":
        from bench.cluster.slurm import submit_sweep

        render = None if board is None else (lambda res: write_board(res, board))  # noqa: E731
        return submit_sweep(args.sweep, args.override, results, args, render=render)
    check_local_options(args)  # e.g. --partition without --executor slurm is an error
    if args.reason is not None and not args.force:
        raise UsageError("--reason: only with --force (it says why done runs are re-run)")
    if args.side_by_side < 1:
        raise UsageError(f"--side-by-side: must be >= 1, got {args.side_by_side}")
    if args.side_by_side > 1 and args.force:
        raise UsageError("--side-by-side: not with --force (each process would re-run every done run)")
    done_before = states.count("done")
    reason = args.reason or "re-run with --force"
    from bench.evaluate.outside import external_evaluator

    todo = [cfg.run_id for cfg, st in zip(runs, states) if st != "done"]
    children = _start_side_by_side(args, results, min(args.side_by_side, len(todo)) - 1)
    _wait_for_claims(results, todo, children)
    try:
        with _side_by_side_env(len(children) + 1):
            records = run_sweep(
                sweep,
                results,
                force=args.force,
                progress=not args.quiet,
                runs=runs,
                reason=reason,
                after_run=external_evaluator(results),  # eval.external: each done run on the other test sets
            )
    finally:
        codes = [c.wait() for c in children]
    executed, failed = len(records), sum(r.status == "failed" for r in records)
    if children:  # every process's runs, read back from the records
        after = [run_state(results, cfg) for cfg in runs]
        executed = sum(b != "done" and a != "to run" for a, b in zip(after, states))
        failed = sum(b != "done" and a == "failed" for a, b in zip(after, states))
        print(f"segbench run: the {len(children)} other process(es) exited with {codes}")
    if not executed and done_before == len(runs) and not args.force:
        print(
            f"all {len(runs)} run(s) of sweep {sweep.name!r} are done already in {results}/; "
            "`segbench run --force --reason WHY` re-runs them"
        )
    else:
        print(
            f"{executed} run(s) executed, {failed} failed, {done_before} done already; records in {results}/"
        )
    if board is not None:
        if not args.quiet:
            print("rendering the leaderboard (tables whose records did not change are reused) …", flush=True)
        out = write_board(results, board)
        print(f"leaderboard written to {out}")
    print_summary(results, [cfg.run_id for cfg in runs])
    return 1 if failed or any(codes) else 0


def _leaderboard_arguments(lb: argparse.ArgumentParser) -> None:
    add_results_arg(lb)
    lb.add_argument(
        "--output",
        "--leaderboard",
        "-o",
        dest="output",
        default=None,
        help="file to write (default: leaderboard.md inside the results folder, or the file its "
        ".leaderboard names; .csv/.json/.tex for the other formats)",
    )
    lb.add_argument(
        "--format",
        choices=("md", "csv", "json", "latex"),
        default="md",
        help="md (with plots and the HTML report when the records changed) or one export, alone",
    )
    plots = lb.add_mutually_exclusive_group()
    plots.add_argument(
        "--plots",
        dest="plots",
        action="store_const",
        const=True,
        default=None,
        help="draw the plots and the HTML report now (default: when the records changed since)",
    )
    plots.add_argument(
        "--no-plots", dest="plots", action="store_const", const=False, help="skip the plots and the report"
    )
    lb.add_argument(
        "--all-pairs",
        action="store_true",
        help="test every pair of rows (significance maps); default: each row against its column's best",
    )
    lb.add_argument(
        "--equivalence-margin",
        type=float,
        default=None,
        metavar="M",
        help="claim 'as good as the best within M' (metric units) where the 90%% interval of the paired "
        "difference lies within ±M (TOST); default: no equivalence claim",
    )
    lb.add_argument(
        "--by",
        default=None,
        metavar="KEY",
        help="per-case metadata key (e.g. condition, eye): print each table's rows per group of that key "
        "(mean, 95%% interval, cases, rank in the group) and write <leaderboard stem>_by_KEY.md beside "
        "the leaderboard; the leaderboard itself is not rendered. docs/leaderboard.md, 'Subgroups'",
    )


@register_command(
    "leaderboard", help="render the leaderboard from the records", arguments=_leaderboard_arguments
)
def leaderboard_command(args: argparse.Namespace) -> int:
    """Re-render the leaderboard (and its plots and report) from the records; with ``--by KEY``,
    only the subgroup tables of that key."""
    results = results_folder(args.results, must_exist=True)
    out = leaderboard_file(args.output, results)
    if args.by is not None:
        return _subgroups(args, results, Path(out))
    if args.format != "md" and args.output is None:
        out = out.with_suffix({"csv": ".csv", "json": ".json", "latex": ".tex"}[args.format])
    margin = args.equivalence_margin
    if margin is not None and not margin > 0:
        raise UsageError(f"--equivalence-margin: must be > 0, got {margin}")
    plots = args.plots
    if plots and args.format != "md":
        raise UsageError("--plots: only with --format md (an export writes its file alone)")
    out = write_board(
        results, Path(out), fmt=args.format, plots=plots, all_pairs=args.all_pairs, equivalence_margin=margin
    )
    print(f"leaderboard written to {out}")
    return 0


def _subgroups(args: argparse.Namespace, results: Path, board: Path) -> int:
    """``segbench leaderboard --by KEY``: print the subgroup tables and write them beside ``board``."""
    key = args.by.strip()
    if not key:
        raise UsageError("--by: give a per-case metadata key, e.g. --by condition")
    if args.format != "md":
        raise UsageError(f"--by: writes Markdown only, not --format {args.format}")
    from bench.leaderboard.subgroups import write_subgroups

    out, text = write_subgroups(results, board, key)
    print(text, end="")
    print(f"subgroups written to {out}")
    return 0
