#!/usr/bin/env bash
# Find or install a headless Chromium for the HTML report test and export SEGBENCH_CHROMIUM.
#
#   source .ci/chromium.sh      # what .ci/run does
#
# Looks for chromium / chromium-browser / google-chrome on PATH; when none is found and we run
# as root, installs Debian's `chromium` package with apt-get (apt-get update first).
# Safe under `set -euo pipefail`: it never `exit`s, sets no traps, and reports errors by
# returning non-zero from the function (the test then fails because the binary is missing).

_segbench_find_chromium() {
  local name
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}

_segbench_chromium() {
  local bin
  bin="$(_segbench_find_chromium || true)"
  if [ -z "$bin" ]; then
    if [ "$(id -u)" != "0" ]; then
      echo "chromium.sh: no chromium found and we are not root (apt-get install chromium)" >&2
      return 1
    fi
    echo "chromium.sh: installing chromium with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2 || return 1
    bin="$(_segbench_find_chromium || true)"
    if [ -z "$bin" ]; then
      echo "chromium.sh: apt-get installed chromium but no binary is on PATH" >&2
      return 1
    fi
  fi
  export SEGBENCH_CHROMIUM="$bin"
  echo "chromium.sh: SEGBENCH_CHROMIUM=$SEGBENCH_CHROMIUM" >&2
}

# A failure is reported but does not stop the caller: the screenshot test fails instead,
# naming the missing binary (SEGBENCH_CHROMIUM stays set to the expected name).
_segbench_chromium || export SEGBENCH_CHROMIUM="${SEGBENCH_CHROMIUM:-chromium}"
