"""torch's intra-op threads for a run: the cores this process may use, shared among the run's processes.

torch's default (one thread per core of the machine, whatever the process may use or whoever else
computes) oversubscribes a shared or pinned machine: one default-sweep run trained in 100-125 s
with the default threads and in 8-9 s with one thread on a busy 2-core machine. A run therefore
computes with (:func:`choose_threads`):

1. ``trainer.torch_threads`` when the sweep sets it;
2. else ``$SEGBENCH_THREADS`` when it is set;
3. else the cores this process may use (:func:`bench.records.provenance.usable_cores`: its
   affinity mask, so ``taskset`` and CPU sets count; under a SLURM task at most
   ``$SLURM_CPUS_PER_TASK``) divided by the processes of the run that compute beside it: its
   ``data.num_workers`` DataLoader workers plus itself, times its ranks on this machine when
   segbench or a launcher (``torchrun``'s ``LOCAL_WORLD_SIZE``) starts several (``ddp``); at least 1.

:func:`run_threads` sets the number for the duration of a run (and ``OMP_NUM_THREADS``, so that
Lightning's DDP launcher keeps it) and the record states it (``device.torch_threads``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

import torch

from bench.config import RunConfig
from bench.records.provenance import usable_cores
from bench.run.launch import SPAWN_STRATEGIES, device_count

THREADS_ENV = "SEGBENCH_THREADS"


def _positive_int(value: str | None) -> int | None:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None


def local_processes(cfg: RunConfig, env: Mapping[str, str] | None = None) -> int:
    """Processes of the run on this machine that compute at once (itself included)."""
    env = os.environ if env is None else env
    t = cfg.trainer
    if _positive_int(env.get("SLURM_CPUS_PER_TASK")) and "SLURM_NTASKS" in env:
        ranks = 1  # SLURM gave this task its own cores (capped in available_cores)
    elif _positive_int(env.get("LOCAL_WORLD_SIZE")):
        ranks = int(env["LOCAL_WORLD_SIZE"])  # torchrun
    elif t.strategy.startswith("ddp") and t.strategy not in SPAWN_STRATEGIES:
        ranks = device_count(t.devices)  # Lightning's devices are per node
    else:
        ranks = 1
    return max(ranks, 1) * (1 + max(cfg.data.num_workers, 0))


def available_cores(env: Mapping[str, str] | None = None) -> int:
    """The cores this process may use, capped by ``$SLURM_CPUS_PER_TASK`` inside a SLURM task."""
    env = os.environ if env is None else env
    cores = usable_cores()
    per_task = _positive_int(env.get("SLURM_CPUS_PER_TASK"))
    if per_task and "SLURM_NTASKS" in env:
        cores = min(cores, per_task)
    return max(cores, 1)


def choose_threads(cfg: RunConfig, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """``(threads, where the number comes from)`` for ``cfg`` (resolved; see the module docstring).

    The source is ``trainer.torch_threads``, ``SEGBENCH_THREADS`` or ``cores/processes``.

    Raises:
        ValueError: ``$SEGBENCH_THREADS`` is set but is not an integer >= 1.
    """
    env = os.environ if env is None else env
    if cfg.trainer.torch_threads is not None:
        return int(cfg.trainer.torch_threads), "trainer.torch_threads"
    if env.get(THREADS_ENV, "").strip():
        n = _positive_int(env[THREADS_ENV])
        if n is None:
            raise ValueError(f"${THREADS_ENV}: expected an integer >= 1, got {env[THREADS_ENV]!r}")
        return n, THREADS_ENV
    return max(available_cores(env) // local_processes(cfg, env), 1), "cores/processes"


@contextlib.contextmanager
def run_threads(cfg: RunConfig) -> Iterator[int]:
    """Compute with :func:`choose_threads`'s number inside the block (yields it); restore after."""
    n, _ = choose_threads(cfg)
    before, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)  # Lightning's DDP launcher sets threads unless this is set
    try:
        yield n
    finally:
        torch.set_num_threads(before)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp
