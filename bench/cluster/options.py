"""The SLURM executor's options: ``segbench run --executor slurm --time ... --partition ...``
checked and turned into submitit's ``SlurmExecutor`` parameters (one array task per run).
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from pathlib import Path
from typing import Any

from bench.cluster.queue import SlurmError
from bench.config import TrainerConfig

EXECUTORS = ("local", "slurm")
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
    from bench.run import device_count

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
    root = str(Path(__file__).resolve().parents[2])  # `bench` importable in the task, from any folder
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
