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
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit

from bench.cluster.options import slurm_parameters
from bench.cluster.queue import (
    SlurmError,
    claim_holder,
    first_line,
    ledger_path,
    queue_entries,
    submitted_jobs,
)
from bench.config import RunConfig, TrackingConfig, run_from_dict
from bench.records import is_done, load_record, now, record_path

MAX_TIMEOUT_REQUEUES = 20  # a run may hit the time limit (and resume) this many times
POLL_SECONDS = 2.0  # --wait: how often the queue is read
QUEUE_PATIENCE = 300.0  # --wait: how long squeue may fail in a row before segbench gives up
CLAIM_RETRIES = 3  # a task retries a claim held for a moment (e.g. by `segbench status` probing it)


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

    Picklable by reference (``bench.cluster.slurm.RunTask``), so the task's Python must import ``bench``
    (the sbatch script puts the segbench checkout on ``PYTHONPATH``).
    """

    def __call__(
        self, config: dict[str, Any], tracking: dict[str, Any] | None, results: str, run_id: str
    ) -> str:
        """Run ``config`` (``RunConfig.to_dict()``) into ``results``; returns ``"<run_id>: <status>"``.

        Raises:
            RuntimeError: the run failed (so that SLURM marks the array task FAILED too).
        """
        from bench.run import run_claimed, run_one

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
        if record.status == "failed":
            raise RuntimeError(f"run {run_id} failed: {first_line(record.error)}")
        rank0 = int(os.environ.get("SLURM_PROCID", "0") or 0) == 0
        if cfg.eval.external and rank0:  # as `segbench run` does after a run: other datasets' test splits
            from bench.evaluate.outside import external_evaluator

            external_evaluator(out)(cfg, True)
        return f"{run_id}: {record.status}"

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
    sweep_path: str | Path | None,
    overrides: list[str],
    results: Path,
    args: argparse.Namespace,
    *,
    render: Callable[[Path], Path] | None = None,
) -> int:
    """``segbench run --executor slurm``: submit one job array over the runs to do; print its job id.

    With ``--wait`` the tasks are followed to their end and ``render(results)`` (the caller's
    "render the leaderboard after runs", the same one a local ``segbench run`` uses) is called.
    Returns the exit code: 0 when submitted (or nothing to do); with ``--wait``, 1 when a run
    failed or ended without a record.
    """
    from bench.config import load_sweep
    from bench.run import plan_sweep, resolve_run

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
        return _finish(results, {}, args, render=render) if args.wait else 0
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
    return _finish(results, tasks, args, since=submitted_at, render=render)


def _finish(
    results: Path,
    tasks: dict[str, str],
    args: argparse.Namespace,
    since: str = "",
    render: Callable[[Path], Path] | None = None,
) -> int:
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
        record = load_record(record_path(results, run_id))
        if record is None or str(record.finished_at or "") < since:
            outcome["no record"] += 1
            print(f"run {run_id} (job {tasks[run_id]}) ended without a record; see its log")
        elif record.status == "done":
            outcome["done"] += 1
        else:
            outcome["failed"] += 1
            print(f"run {run_id} failed: {first_line(record.error)}")
    if tasks:
        print(
            f"{outcome['done']} run(s) done, {outcome['failed']} failed, "
            f"{outcome['no record']} without a record"
        )
    if render is not None:
        try:
            print(f"leaderboard written to {render(results)}")
        except ValueError as e:  # no record at all yet
            print(f"no leaderboard: {e}")
    return 1 if outcome["failed"] or outcome["no record"] else 0


# ---- a hand-written sbatch script (docs/cluster.md) ----------------------------------------------


def _main(argv: list[str] | None = None) -> int:
    """``python -m bench.cluster.slurm SWEEP --results DIR [--index I | --run-id ID] [-o KEY=VALUE]``.

    Executes one run of a sweep inside a job you submitted yourself (every SLURM task of the job
    runs this same command; ``srun`` makes one task per rank). The run is picked by ``--run-id``,
    ``--index`` or, by default, ``$SLURM_ARRAY_TASK_ID`` (the run's position in ``segbench run
    --dry-run``). Exit code 0 when the run is done (now or before), 1 when it failed, 2 on a
    usage error.
    """
    from bench.config import load_sweep

    p = argparse.ArgumentParser(prog="python -m bench.cluster.slurm", description=_main.__doc__)
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
        print(f"python -m bench.cluster.slurm: error: {first_line(e)}", file=sys.stderr)
        return 2
    try:
        print(RunTask()(cfg.to_dict(), tracking, str(Path(args.results).resolve()), cfg.run_id))
    except RuntimeError as e:
        print(first_line(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
