#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the tests and export SEGBENCH_PG_URL.
#
#   source .ci/postgres.sh      # what .ci/run does; the server stops when that shell exits
#   bash .ci/postgres.sh        # prints the export line; stop it with the printed pg_ctl command
#
# Installs Debian's postgresql when no server binaries are found (needs root), creates a
# cluster in a temp dir owned by the `postgres` user (or the current user when not root),
# listens on 127.0.0.1 only, on a free port, with trust authentication (the cluster is private
# to this machine and deleted afterwards), and creates the database `segbench`.
# Safe under `set -euo pipefail`; errors are reported and returned, never `exit` from a sourced shell.

_segbench_pg_start() {
  local bindir datadir port owner run
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
    if [ "$(id -u)" != "0" ]; then
      echo "postgres.sh: PostgreSQL is not installed and we are not root (apt-get install postgresql)" >&2
      return 1
    fi
    echo "postgres.sh: installing postgresql with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  fi

  datadir="$(mktemp -d "${TMPDIR:-/tmp}/segbench-pg.XXXXXX")"
  if [ "$(id -u)" = "0" ]; then
    owner=postgres
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$datadir"
    run=(runuser -u postgres --)
  else
    owner="$(id -un)"
    run=()
  fi
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

  "${run[@]}" "$bindir/initdb" -D "$datadir/data" -U postgres --auth=trust --encoding=UTF8 >"$datadir/initdb.log" 2>&1 ||
    { cat "$datadir/initdb.log" >&2; return 1; }
  "${run[@]}" "$bindir/pg_ctl" -D "$datadir/data" -l "$datadir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $datadir -c max_connections=100 -c fsync=off" start >&2 ||
    { cat "$datadir/server.log" >&2; return 1; }
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres segbench ||
    { cat "$datadir/server.log" >&2; return 1; }

  export SEGBENCH_PG_URL="postgresql://postgres@127.0.0.1:$port/segbench"
  # stop by pid: the postmaster's pid is the first line of its pid file
  export SEGBENCH_PG_STOP="kill -INT \$(head -n 1 $datadir/data/postmaster.pid)"
  export SEGBENCH_PG_DIR="$datadir"
  echo "export SEGBENCH_PG_URL=$SEGBENCH_PG_URL"
  echo "# owner $owner; stop with: $SEGBENCH_PG_STOP" >&2
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # sourced: start, and stop the server when the sourcing shell exits
  _segbench_pg_start
  if [ -z "${SEGBENCH_SERVICES_TRAP:-}" ]; then  # .ci/run sets one trap for every service
    trap 'eval "$SEGBENCH_PG_STOP" >/dev/null 2>&1 || true; rm -rf "$SEGBENCH_PG_DIR"' EXIT
  fi
else
  set -euo pipefail
  _segbench_pg_start
fi
