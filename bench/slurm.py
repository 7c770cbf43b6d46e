"""Sweeps on a SLURM cluster: ``segbench run SWEEP.yaml --executor slurm`` (through submitit).

One submission is one SLURM job array over the runs of the sweep that are neither done nor
already running or queued; array task *i* executes exactly one run (:class:`RunTask`) and writes
its record as a local ``segbench run`` would, under the run's ``flock`` claim. A task that SLURM
is about to stop (time limit or preemption: SLURM sends ``USR2`` ``signal_delay_s`` before) is
checkpointed by submitit and requeued with the same call; the run then resumes from its last
Lightning checkpoint (``<results>/.work/<run_id>/checkpoints/last.ckpt``). Each submission is
appended to ``<results>/.slurm/submissions.jsonl`` (run id -> SLURM job id), which re-submission
and ``segbench status`` read together with ``squeue``. See ``docs/cluster.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import submitit

from bench.config import RunConfig, TrackingConfig, TrainerConfig, run_from_dict
from bench.status import (
    SlurmError,
    claim_holder,
    first_line,
    ledger_path,
    queue_entries,
    submitted_jobs,
)
from bench.store import is_done, now, read_record, record_path

EXECUTORS = ("local", "slurm")
MAX_TIMEOUT_REQUEUES = 20  # a run may hit the time limit (and resume) this many times
POLL_SECONDS = 2.0  # --wait: how often the queue is read
QUEUE_PATIENCE = 300.0  # --wait: how long squeue may fail in a row before segbench gives up
CLAIM_RETRIES = 3  # a task retries a claim held for a moment (e.g. by `segbench status` probing it)
# sbatch options segbench sets itself; --slurm-arg must not set them behind its back.
_OWN_OPTIONS = {
    "partition": "--partition",
    "time": "--time",
    "mem": "--mem",
    "cpus-per-task": "--cpus-per-run",
    "gpus-per-node": "--gpus-per-run",
    "array": "--max-parallel",
    "nodes": "trainer.num_nodes",
    "ntasks-per-node": "trainer.devices",
    "output": "--slurm-folder",
    "error": "--slurm-folder",
    "job-name": "the sweep's name",
    "signal": "segbench (USR2 before the limit)",
}


# ---- options ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``segbench run`` options of the SLURM executor."""
    g = parser.add_argument_group("executor (docs/cluster.md)")
    g.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: run here (default); slurm: submit one SLURM job array over the runs to do",
    )
    g.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's default)")
    g.add_argument(
        "--gpus-per-run",
        type=int,
        default=None,
        metavar="N",
        help="GPUs per node for each run (default: trainer.devices when accelerator is gpu)",
    )
    g.add_argument(
        "--cpus-per-run",
        type=int,
        default=None,
        metavar="N",
        help="CPUs for each run, split evenly over its ranks on a node",
    )
    g.add_argument("--mem", default=None, metavar="M", help="memory per node for each run, e.g. 32G")
    g.add_argument(
        "--time",
        default=None,
        metavar="T",
        help="time limit of each array task (SLURM format: minutes, H:M:S, D-H:M:S); "
        "required with --executor slurm",
    )
    g.add_argument(
        "--max-parallel",
        type=int,
        default=None,
        metavar="K",
        help="at most K array tasks run at once (sbatch --array=...%%K)",
    )
    g.add_argument(
        "--slurm-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --slurm-arg account=lab --slurm-arg qos=high "
        "(a bare KEY is a flag: --slurm-arg exclusive); repeatable",
    )
    g.add_argument(
        "--wait",
        action="store_true",
        help="follow the job array with a progress bar, then render the leaderboard",
    )
    g.add_argument(
        "--slurm-folder",
        default=None,
        metavar="DIR",
        help="submitit's pickles and the tasks' logs (default: <results>/.slurm/jobs); "
        "must be on a file system every node sees",
    )


_SLURM_ONLY = (
    "partition",
    "gpus_per_run",
    "cpus_per_run",
    "mem",
    "time",
    "max_parallel",
    "slurm_arg",
    "wait",
    "slurm_folder",
)


def check_local_options(args: argparse.Namespace) -> None:
    """Refuse SLURM options given with ``--executor local`` (they would be silently ignored)."""
    given = [name for name in _SLURM_ONLY if getattr(args, name, None) not in (None, False, [])]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise SlurmError(f"{flags}: only with --executor slurm")


def parse_time(text: str | None) -> int:
    """A SLURM time limit (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) in whole minutes."""
    if text is None:
        raise SlurmError(
            "--time is required with --executor slurm (e.g. --time 4:00:00), so that a task "
            "is checkpointed and requeued before its limit"
        )
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if m is None:
        raise SlurmError(f"--time: {text!r} is not a SLURM time (minutes, H:M:S or D-H:M:S)")
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # M:S
        seconds = a * 60 + b
    else:  # M
        seconds = a * 60
    if seconds <= 0:
        raise SlurmError(f"--time: {text!r} must be longer than 0")
    return math.ceil(seconds / 60)


def parse_slurm_args(items: list[str]) -> dict[str, Any]:
    """``--slurm-arg KEY=VALUE`` (or a bare ``KEY`` flag) -> sbatch options ``{key: value | True}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", key):
            raise SlurmError(f"--slurm-arg {item!r}: expected KEY=VALUE with an sbatch option name as KEY")
        if key in _OWN_OPTIONS:
            raise SlurmError(f"--slurm-arg {item!r}: {key} is set by segbench; use {_OWN_OPTIONS[key]}")
        out[key] = value if sep else True
    return out


def _positive(value: int | None, flag: str) -> int | None:
    if value is not None and value < 1:
        raise SlurmError(f"{flag}: must be >= 1, got {value}")
    return value


def slurm_parameters(args: argparse.Namespace, trainer: TrainerConfig, name: str) -> dict[str, Any]:
    """submitit ``SlurmExecutor.update_parameters`` arguments for every run of a sweep.

    A run with several devices or nodes is one array task of ``trainer.num_nodes`` nodes with one
    SLURM task (= one Lightning rank) per device, so Lightning's SLURM environment wires up DDP.
    """
    from bench.launch import device_count

    minutes = parse_time(args.time)
    gpus = _positive(args.gpus_per_run, "--gpus-per-run")
    cpus = _positive(args.cpus_per_run, "--cpus-per-run")
    parallel = _positive(args.max_parallel, "--max-parallel")
    fixed = (
        isinstance(trainer.devices, int)
        and trainer.devices > 0
        or str(trainer.devices).isdigit()
        or "," in str(trainer.devices)
    )
    ranks = device_count(trainer.devices) if fixed else gpus or 1  # "auto" / -1: one rank per GPU asked for
    if gpus is not None and trainer.accelerator != "cpu" and ranks > 1 and gpus != ranks:
        raise SlurmError(
            f"--gpus-per-run {gpus} does not match trainer.devices {trainer.devices}: "
            "each rank of a run uses one GPU; set both to the same number"
        )
    if gpus is None and trainer.accelerator in ("gpu", "cuda"):
        gpus = ranks
    if args.mem is not None and not re.fullmatch(r"\d+[KMGTkmgt]?[Bb]?", str(args.mem)):
        raise SlurmError(f"--mem: {args.mem!r} is not a SLURM memory size (e.g. 16G, 32000M)")
    root = str(Path(__file__).resolve().parents[1])  # `bench` importable in the task, from any folder
    params: dict[str, Any] = {
        "job_name": f"segbench-{name}",
        "time": minutes,
        "nodes": trainer.num_nodes,
        "ntasks_per_node": ranks,
        "signal_delay_s": min(90, max(10, minutes * 60 // 5)),
        "setup": [
            f"export PYTHONPATH={shlex.quote(root)}${{PYTHONPATH:+:$PYTHONPATH}}",
            "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}",
        ],
        "additional_parameters": parse_slurm_args(list(args.slurm_arg or [])),
    }
    optional = {
        "partition": args.partition,
        "gpus_per_node": gpus,
        "cpus_per_task": None if cpus is None else max(1, math.ceil(cpus / ranks)),
        "mem": None if args.mem is None else str(args.mem),
        "array_parallelism": parallel,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    return params


# ---- the submission ledger -------------------------------------------------------------------


def _append_ledger(results: Path, entry: dict[str, Any]) -> None:
    path = ledger_path(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# ---- inside an array task ----------------------------------------------------------------------


class RunTask(submitit.helpers.Checkpointable):
    """What one array task executes: one run, under its claim, resuming from its checkpoint.

    Picklable by reference (``bench.slurm.RunTask``), so the task's Python must import ``bench``
    (the sbatch script puts the segbench checkout on ``PYTHONPATH``).
    """

    def __call__(
        self, config: dict[str, Any], tracking: dict[str, Any] | None, results: str, run_id: str
    ) -> str:
        """Run ``config`` (``RunConfig.to_dict()``) into ``results``; returns ``"<run_id>: <status>"``.

        Raises:
            RuntimeError: the run failed (so that SLURM marks the array task FAILED too).
        """
        from bench.runner import run_claimed, run_one

        cfg = run_from_dict(config)
        if cfg.run_id != run_id:
            raise RuntimeError(
                f"run {run_id}: the config rebuilt here has id {cfg.run_id} (segbench changed "
                "between submission and execution?)"
            )
        track = None if tracking is None else TrackingConfig(**tracking)
        out = Path(results)
        if is_done(out, run_id):
            return f"{run_id}: done already"
        if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
            os.environ["SEGBENCH_LAUNCHED"] = "1"  # SLURM started every rank; Lightning joins them
        if int(os.environ.get("SLURM_PROCID", "0") or 0) != 0:
            record = run_one(cfg, out, tracking=track, progress=False)  # rank 0 holds the claim
        else:
            record = None
            for attempt in range(CLAIM_RETRIES):
                record = run_claimed(cfg, out, tracking=track, progress=False)
                if record is not None or is_done(out, run_id):
                    break
                if attempt + 1 < CLAIM_RETRIES:
                    time.sleep(1.0)
            if record is None:
                return (
                    f"{run_id}: done already" if is_done(out, run_id) else f"{run_id}: held by another worker"
                )
        if record.get("status") == "failed":
            raise RuntimeError(f"run {run_id} failed: {first_line(record.get('error'))}")
        return f"{run_id}: {record.get('status')}"

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on ``USR2`` (time limit / preemption): requeue the same call.

        Nothing needs saving here: the runner's checkpoint (every validation and every
        ``trainer.checkpoint_every_n_steps`` steps) is what the requeued task resumes from.
        """
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


# ---- submitting --------------------------------------------------------------------------------


def _to_submit(runs: list[RunConfig], results: Path) -> tuple[list[RunConfig], dict[str, int]]:
    """The runs to submit, and how many were skipped as done / running / queued."""
    ledger = submitted_jobs(results)
    queue = queue_entries() if ledger else {}
    todo, skipped = [], {"done": 0, "running": 0, "queued": 0}
    for cfg in runs:
        job = ledger.get(cfg.run_id)
        if is_done(results, cfg.run_id):
            skipped["done"] += 1
        elif claim_holder(results, cfg.run_id) is not None:
            skipped["running"] += 1
        elif job is not None and job["job_id"] in queue and queue[job["job_id"]].active:
            skipped["queued"] += 1
        else:
            todo.append(cfg)
    return todo, skipped


def submit_sweep(
    sweep_path: str | Path | None, overrides: list[str], results: Path, args: argparse.Namespace
) -> int:
    """``segbench run --executor slurm``: submit one job array over the runs to do; print its job id.

    Returns the exit code: 0 when submitted (or nothing to do); with ``--wait``, 1 when a run
    failed or ended without a record.
    """
    from bench.config import load_sweep
    from bench.runner import plan_sweep, resolve_run

    if getattr(args, "force", False):
        raise SlurmError(
            "--force does not combine with --executor slurm: run `segbench run --force` locally, "
            "or move the records aside first"
        )
    sweep = load_sweep(sweep_path, overrides)
    runs = plan_sweep(sweep)  # names and options checked before anything is queued
    params = slurm_parameters(args, resolve_run(runs[0]).trainer, sweep.name) if runs else {}
    results = Path(results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    todo, skipped = _to_submit(runs, results)
    summary = f"{skipped['done']} of {len(runs)} run(s) done, {skipped['running']} running, "
    summary += f"{skipped['queued']} queued"
    if not todo:
        print(f"nothing to submit: {summary}")
        return _finish(results, {}, args) if args.wait else 0
    folder = Path(args.slurm_folder).resolve() if args.slurm_folder else results / ".slurm" / "jobs"
    if shutil.which("srun") is None or shutil.which("sbatch") is None:
        raise SlurmError("sbatch/srun not found: --executor slurm needs the SLURM client commands on PATH")
    executor = submitit.SlurmExecutor(
        folder=folder / "%j", max_num_timeout=MAX_TIMEOUT_REQUEUES, python=shlex.quote(sys.executable)
    )
    executor.update_parameters(**params)
    tracking = dataclasses.asdict(sweep.tracking)
    submitted_at = now()
    try:
        jobs = executor.map_array(
            RunTask(),
            [c.to_dict() for c in todo],
            [tracking] * len(todo),
            [str(results)] * len(todo),
            [c.run_id for c in todo],
        )
    except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as e:
        raise SlurmError(
            f"sbatch failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
        ) from None
    tasks = {cfg.run_id: job.job_id for cfg, job in zip(todo, jobs)}
    array_id = jobs[0].job_id.split("_")[0]
    _append_ledger(
        results,
        {
            "job_id": array_id,
            "submitted_at": submitted_at,
            "logs": str(folder),
            "sweep": sweep.name,
            "tasks": tasks,
        },
    )
    kind = "job array" if len(jobs) > 1 else "job"
    print(f"submitted SLURM {kind} {array_id}: {len(jobs)} run(s) ({summary}); logs in {folder}")
    if not args.wait:
        print(f"follow it with: segbench status {sweep_path or ''} --results {results}".replace("  ", " "))
        return 0
    return _finish(results, tasks, args, since=submitted_at)


def _finish(results: Path, tasks: dict[str, str], args: argparse.Namespace, since: str = "") -> int:
    """``--wait``: follow ``tasks`` (run id -> job id) until none is queued or running, then report."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="SLURM tasks", unit="run", disable=bool(getattr(args, "quiet", False)))
    failing_since = None
    while tasks:
        try:
            queue = queue_entries()
            failing_since = None
        except SlurmError:  # slurmctld restarting, say: the tasks go on; give it QUEUE_PATIENCE seconds
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > QUEUE_PATIENCE:
                raise
            time.sleep(POLL_SECONDS)
            continue
        states = [queue[j].state for j in tasks.values() if j in queue and queue[j].active]
        bar.n = len(tasks) - len(states)
        bar.set_postfix(running=states.count("RUNNING"), pending=states.count("PENDING"), refresh=True)
        if not states:
            break
        time.sleep(POLL_SECONDS)
    bar.close()
    outcome = {"done": 0, "failed": 0, "no record": 0}
    for run_id in tasks:
        record = read_record(record_path(results, run_id))
        if record is None or str(record.get("finished_at", "")) < since:
            outcome["no record"] += 1
            print(f"run {run_id} (job {tasks[run_id]}) ended without a record; see its log")
        elif record.get("status") == "done":
            outcome["done"] += 1
        else:
            outcome["failed"] += 1
            print(f"run {run_id} failed: {first_line(record.get('error'))}")
    if tasks:
        print(
            f"{outcome['done']} run(s) done, {outcome['failed']} failed, "
            f"{outcome['no record']} without a record"
        )
    if not getattr(args, "no_leaderboard", False):
        from bench.leaderboard import write_leaderboard

        try:
            from bench.cli import default_leaderboard  # here: the CLI module imports this one

            board = getattr(args, "leaderboard", None)
            out = write_leaderboard(results, Path(board) if board else default_leaderboard(results))
            print(f"leaderboard written to {out}")
        except ValueError as e:  # no record at all yet
            print(f"no leaderboard: {e}")
    return 1 if outcome["failed"] or outcome["no record"] else 0


# ---- a hand-written sbatch script (docs/cluster.md) ----------------------------------------------


def _main(argv: list[str] | None = None) -> int:
    """``python -m bench.slurm SWEEP --results DIR [--index I | --run-id ID] [-o KEY=VALUE]``.

    Executes one run of a sweep inside a job you submitted yourself (every SLURM task of the job
    runs this same command; ``srun`` makes one task per rank). The run is picked by ``--run-id``,
    ``--index`` or, by default, ``$SLURM_ARRAY_TASK_ID`` (the run's position in ``segbench run
    --dry-run``). Exit code 0 when the run is done (now or before), 1 when it failed, 2 on a
    usage error.
    """
    from bench.config import load_sweep

    p = argparse.ArgumentParser(prog="python -m bench.slurm", description=_main.__doc__)
    p.add_argument("sweep", help="sweep YAML file")
    p.add_argument("--results", required=True, help="folder of run records")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, default=None, help="position of the run in the sweep (from 0)")
    which.add_argument("--run-id", default=None, help="the run's id")
    args = p.parse_args(argv)
    try:
        sweep = load_sweep(args.sweep, args.override)
        runs = sweep.expand()
        by_id = {cfg.run_id: cfg for cfg in runs}
        if args.run_id is not None:
            if args.run_id not in by_id:
                raise ValueError(f"--run-id {args.run_id}: not a run of {args.sweep}")
            cfg = by_id[args.run_id]
        else:
            index = args.index if args.index is not None else os.environ.get("SLURM_ARRAY_TASK_ID")
            if index is None or not str(index).isdigit() or int(index) >= len(runs):
                raise ValueError(f"--index {index}: {args.sweep} has {len(runs)} run(s) (0..{len(runs) - 1})")
            cfg = runs[int(index)]
        tracking = dataclasses.asdict(sweep.tracking)
    except ValueError as e:
        print(f"python -m bench.slurm: error: {first_line(e)}", file=sys.stderr)
        return 2
    try:
        print(RunTask()(cfg.to_dict(), tracking, str(Path(args.results).resolve()), cfg.run_id))
    except RuntimeError as e:
        print(first_line(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
