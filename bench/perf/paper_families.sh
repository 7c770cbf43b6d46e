#!/usr/bin/env bash
# The published-size family comparison on a GPU: bench/perf/paper_families.sh [--dry-run] [segbench run options]
#
# Runs bench/sweeps/gpu_paper_families.yaml (nnU-Net ResEnc, U-Mamba Bot and xLSTM-UNet Bot on the
# same ResEnc backbone, Swin UNETR; paper sizes, nnU-Net's recipe, 3 seeds, MSD Hippocampus) into
# RESULTS (default results), then renders the leaderboard. Installs what the GPU paths need first
# the way bench/perf/gpu_check.sh does (WHEELS, SITE; a machine without network). Every run
# resumes after an interruption: call it again with the same RESULTS. Options go to `segbench run`
# (`--side-by-side K`: K runs at once on the one GPU). --dry-run plans every run
# (configs, presets, parameter counts checked; nothing trains) and works on a CPU machine.
set -uo pipefail
cd "$(dirname "$0")/../.."
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/segbench-site}
PY=${PYTHON:-python3}
RESULTS=${RESULTS:-results}
export PYTHONUNBUFFERED=1 PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$SITE"
for wheels in "$WHEELS/deps" "$WHEELS"; do
    if compgen -G "$wheels/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" --upgrade "$wheels"/*.whl \
            || echo "paper_families.sh: some wheels of $wheels did not install (the pure-PyTorch paths run)" >&2
    fi
done
"$PY" -m bench.cli run bench/sweeps/gpu_paper_families.yaml --results "$RESULTS" "$@"
status=$?
case " $* " in *" --dry-run "*) exit $status ;; esac
"$PY" -m bench.cli leaderboard --results "$RESULTS" --plots || true
exit $status
