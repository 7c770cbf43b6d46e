#!/usr/bin/env bash
# Start a throw-away one-node SLURM cluster (munged, slurmctld, slurmd) for the SLURM tests.
#
#   source .ci/slurm.sh     # what .ci/run does; it runs "$SEGBENCH_SLURM_STOP" when it exits
#   bash .ci/slurm.sh       # prints the export lines; stop the daemons with the printed command
#
# Installs Debian's slurm-wlm and munge when they are missing (needs root), writes slurm.conf and
# a fresh MUNGE key in a temp dir (one node "localhost" = 127.0.0.1, `nproc` CPUs, the machine's
# memory minus a margin, proctrack/linuxproc, task/none, no cgroup.conf, no accounting), binds
# every daemon to 127.0.0.1 (cred_expire=10: a requeued job may start again after 11 s, not 121 s),
# starts the three daemons as root, waits until the node is idle and exports SLURM_CONF,
# SEGBENCH_SLURM=1 and SEGBENCH_SLURM_STOP (kill by pid). Running it again starts another
# cluster on other free ports. Safe under `set -euo pipefail`: errors are
# reported and returned, never `exit`; no traps.

_segbench_slurm_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_segbench_slurm_start() {
  local dir conf cpus mem ctld_port slurmd_port i state pid_munge pid_ctld pid_slurmd
  if [ "$(id -u)" != "0" ]; then
    echo "slurm.sh: must run as root (it starts slurmd, which runs jobs as their users)" >&2
    return 1
  fi
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
    ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm.sh: installing slurm-wlm and munge with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >&2
  fi

  dir="$(mktemp -d "${TMPDIR:-/tmp}/segbench-slurm.XXXXXX")"
  chmod 700 "$dir"
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  conf="$dir/slurm.conf"
  cpus="$(nproc)"
  mem="$(awk '/^MemTotal:/ { m = int($2 / 1024); print (m > 4096 ? m - 2048 : int(m / 2)) }' /proc/meminfo)"
  ctld_port="$(_segbench_slurm_free_port)"
  slurmd_port="$(_segbench_slurm_free_port)"
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port="$(_segbench_slurm_free_port)"; done

  # MUNGE: a private key, socket, pid and log in the temp dir (the system's munged is untouched).
  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 400 "$dir/munge.key"
  munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munged.seed" ||
    { cat "$dir/log/munged.log" >&2 2>/dev/null; return 1; }

  cat >"$conf" <<EOF
# One-node test cluster written by .ci/slurm.sh (throw-away; deleted with $dir).
ClusterName=segbench
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket,cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MinJobAge=120
InactiveLimit=0
SlurmdTimeout=60
JobRequeue=1
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$conf"
  slurmctld -f "$conf" || { cat "$dir/log/slurmctld.log" >&2; return 1; }
  slurmd -f "$conf" -N localhost || { cat "$dir/log/slurmd.log" >&2; return 1; }

  state=""
  for i in $(seq 1 60); do
    state="$(sinfo -h -n localhost -o %T 2>/dev/null || true)"
    [ "$state" = "idle" ] && break
    sleep 1
  done
  pid_munge="$(cat "$dir/munged.pid" 2>/dev/null || true)"
  pid_ctld="$(cat "$dir/slurmctld.pid" 2>/dev/null || true)"
  pid_slurmd="$(cat "$dir/slurmd.pid" 2>/dev/null || true)"
  export SEGBENCH_SLURM_STOP="kill $pid_slurmd $pid_ctld $pid_munge 2>/dev/null || true"
  export SEGBENCH_SLURM_DIR="$dir"
  if [ "$state" != "idle" ]; then
    echo "slurm.sh: node localhost is '${state:-unreachable}' after ${i}s, not idle; logs in $dir/log" >&2
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    eval "$SEGBENCH_SLURM_STOP"
    return 1
  fi
  export SEGBENCH_SLURM=1
  echo "export SLURM_CONF=$SLURM_CONF SEGBENCH_SLURM=1"
  echo "# one-node SLURM cluster up (logs in $dir/log); stop with: $SEGBENCH_SLURM_STOP" >&2
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  _segbench_slurm_start
else
  set -euo pipefail
  _segbench_slurm_start
fi
