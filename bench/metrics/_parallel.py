"""Runs expensive metric parts (clDice's 3D skeletons) in forked child processes while the
caller computes the rest.

scikit-image's 3D skeletonisation (clDice) holds the GIL for most of its work, so a thread
cannot overlap it with the other metrics; a ``fork`` child can, and it inherits the masks
copy-on-write (nothing is pickled on the way in, only the float result comes back).

A child is used only where it is safe and worth it: Linux (``fork``), at least two usable
CPU cores, not inside a daemonic process (e.g. a ``DataLoader`` worker, which may not have
children), inputs of at least :data:`MIN_VOXELS` voxels, fewer running children than
:func:`max_children`, and a caller that allows it (``submit(..., parallel=False)`` never forks;
``case_metrics(parallel=False)`` passes that on). Otherwise, or if the child fails in any way,
the function runs in-process, so the result (or the exception) is always exactly what an
in-process call gives.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")

MIN_VOXELS = 1 << 20  # below this (e.g. 2D images, 64^3 volumes) forking costs more than it saves
# A child that sends nothing within this budget (e.g. a lock inherited from another thread at
# fork time) is killed and the work is redone in-process: generous against the ~0.1 s per
# 2^20 voxels that skeletonisation takes.
TIMEOUT_BASE_S = 30.0
TIMEOUT_PER_MVOXEL_S = 10.0


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def max_children() -> int:
    """Children that may run at once: one core is left to the caller (at least one child)."""
    return max(_usable_cores() - 1, 1)


_LOCK = threading.Lock()
_live = 0  # children started by submit() and not yet waited for


def fork_enabled(n_voxels: int | None) -> bool:
    """Whether :func:`submit` would use a child process for an input of ``n_voxels`` voxels
    (``None``: work that is always worth a child) when fewer than
    :func:`max_children` children are running."""
    return (
        (n_voxels is None or n_voxels >= MIN_VOXELS)
        and sys.platform.startswith("linux")
        and not mp.current_process().daemon
        and _usable_cores() >= 2
    )


def _child(conn: Connection, fn: Callable[..., Any], args: tuple) -> None:
    try:
        conn.send(fn(*args))
    except BaseException:  # noqa: BLE001 - the parent recomputes in-process and raises there
        pass
    finally:
        conn.close()


def submit(fn: Callable[..., T], *args: Any, n_voxels: int | None, parallel: bool = True) -> Callable[[], T]:
    """Starts ``fn(*args)`` (in a forked child when ``parallel`` and :func:`fork_enabled`) and
    returns a waiter.

    Args:
        fn: picklable-result function of numpy arrays; it must not modify its arguments.
        *args: its arguments (inherited by the child, not pickled).
        n_voxels: input size, compared with :data:`MIN_VOXELS`; ``None`` skips that test (and
            the child gets :data:`TIMEOUT_BASE_S`).
        parallel: ``False`` runs ``fn`` in this process when the waiter is called.

    Returns:
        A function without arguments that returns ``fn(*args)``: the child's result, or an
        in-process call when no child was started or the child sent no result.
    """
    global _live
    if not (parallel and fork_enabled(n_voxels)):
        return lambda: fn(*args)
    with _LOCK:
        if _live >= max_children():  # enough children already: this one runs in-process
            return lambda: fn(*args)
        _live += 1
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
    try:
        with warnings.catch_warnings():  # Python >= 3.12 warns about forking with threads alive
            warnings.simplefilter("ignore", DeprecationWarning)
            proc.start()
    except (OSError, ValueError, AssertionError):  # no fork possible here: compute in-process
        send.close()
        recv.close()
        with _LOCK:
            _live -= 1
        return lambda: fn(*args)
    send.close()

    timeout = TIMEOUT_BASE_S + TIMEOUT_PER_MVOXEL_S * (n_voxels or 0) / 2**20

    def wait() -> T:
        global _live
        try:
            if not recv.poll(timeout):
                proc.kill()
                raise EOFError("metric child process timed out")
            result: T = recv.recv()
        except (EOFError, OSError):  # the child failed, raised or hung: recompute here
            result = fn(*args)
        finally:
            recv.close()
            proc.join()
            with _LOCK:
                _live -= 1
        return result

    return wait
