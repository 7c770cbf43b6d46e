"""Fault injection for the crash tests: ``$SEGBENCH_FAULT`` names a point where this process kills
itself with SIGKILL, exactly as a dying node would (nothing gets to clean up).

Points: ``step:<n>`` (after optimiser step n), ``checkpoint:<n>`` (after writing the checkpoint
of step n), ``validation:<n>`` (as the fit's validation after step n starts), ``before_test``
(after the fit), ``record_write`` (before a record is written),
``atomic_write:<file name>`` (inside an atomic write, after the temp file and before the rename).
Unset in normal use: every point is then a no-op.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "SEGBENCH_FAULT"


def fault_point(name: str, detail: object = None) -> None:
    """Kill this process with SIGKILL when ``$SEGBENCH_FAULT`` is ``name`` or ``name:detail``."""
    want = os.environ.get(FAULT_ENV)
    if not want:
        return
    here = name if detail is None else f"{name}:{detail}"
    if want == here:
        os.kill(os.getpid(), signal.SIGKILL)
