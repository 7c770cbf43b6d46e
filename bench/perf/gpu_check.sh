#!/usr/bin/env bash
# The GPU check on a machine with no network: bench/perf/gpu_check.sh [gpu_check options]
#
# WHEELS (default .whl) is the folder prepared beforehand (docs/cluster.md, "A lent GPU: 15
# minutes"): GPU packages at its top, segbench's own missing dependencies under WHEELS/deps.
# Everything is installed with pip --target into SITE (default /tmp/segbench-site), which goes
# first on PYTHONPATH, so the machine's environment is not changed. Options are passed on to
# `python -m bench.perf.gpu_check` (for example --out DIR/gpu.json --budget-s 780).
set -uo pipefail
cd "$(dirname "$0")/../.."
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/segbench-site}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$SITE"
if compgen -G "$WHEELS/deps/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" --upgrade "$WHEELS"/deps/*.whl \
        || echo "gpu_check.sh: some dependency wheels of $WHEELS/deps did not install" >&2
fi
exec "$PY" -m bench.perf.gpu_check --wheels "$WHEELS" --site "$SITE" "$@"
