"""``python -m bench.run.rank JOB.json --results DIR``: one run from a job file, in every rank.

The process that :func:`bench.run.launch.run_launched` starts for a multi-process ``ddp`` run
(Lightning re-runs this same command once per extra rank; global rank 0 writes the record). It is
also the entry point for multi-node runs started by an external launcher (torchrun, SLURM):
the job file holds ``{config, tracking, progress, extra}`` (see ``docs/sweeps.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.config import TrackingConfig, run_from_dict
from bench.run.execute import run_one


def main(argv: list[str] | None = None) -> int:
    """Run the job; 0 when its record is ``done``, 1 otherwise."""
    p = argparse.ArgumentParser(prog="python -m bench.run.rank", description=__doc__.split("\n")[0])
    p.add_argument("job", help="job JSON: {config, tracking, progress, extra}")
    p.add_argument("--results", required=True)
    args = p.parse_args(argv)
    job = json.loads(Path(args.job).read_text())
    tracking = TrackingConfig(**job["tracking"]) if job.get("tracking") else None
    record = run_one(
        run_from_dict(job["config"]),
        Path(args.results),
        tracking=tracking,
        progress=bool(job.get("progress", False)),
        extra=job.get("extra") or None,
    )
    return 0 if record.done else 1


if __name__ == "__main__":
    sys.exit(main())
