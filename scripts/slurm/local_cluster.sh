#!/bin/bash
# A real one-node SLURM cluster on this machine (slurmctld + slurmd + munge), for trying
# `launcher=slurm` and `scripts/slurm/train.sbatch` and for the tests marked `slurm`.
#
#   sudo scripts/slurm/local_cluster.sh up       # install if missing, configure, start, wait for an idle node
#   sudo scripts/slurm/local_cluster.sh status   # daemons and `sinfo`
#   sudo scripts/slurm/local_cluster.sh down     # stop the daemons (configuration and packages stay)
#
# Needs root and Debian/Ubuntu (`apt-get install slurm-wlm munge`). `up` writes /etc/slurm/slurm.conf
# for this host only when that file is missing or was written by this script (a marker line), so
# an existing cluster's configuration is never touched. The node has this host's CPUs and memory,
# one partition `local` (the default) and requeue allowed; jobs run as the submitting user. Every
# step is idempotent: `up` on a running cluster only checks it. Logs: /var/log/slurm/.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# written by embedding-trainer scripts/slurm/local_cluster.sh"
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
NODE=$(hostname -s)

say() { echo "[local_cluster] $*"; }
fail() { echo "[local_cluster] error: $*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || fail "run as root (sudo $0 $1): it installs packages, writes $CONF and starts daemons."
}

running() { pgrep -x "$1" >/dev/null; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
     && command -v sbatch >/dev/null; then
    return
  fi
  command -v apt-get >/dev/null || fail "slurmctld/slurmd/munge are missing and apt-get is not available: install SLURM and munge yourself."
  say "installing slurm-wlm, slurmctld, slurmd and munge with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurmctld slurmd munge >/dev/null
}

write_config() {
  if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    say "keeping the existing $CONF (not written by this script)"
    return
  fi
  local cpus memory_mb
  cpus=$(nproc)
  memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p /etc/slurm "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
  cat >"$CONF.new" <<EOF
$MARKER
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
# A requeued job may start again after cred_expire seconds (default 120) and is picked up at the
# next scheduling pass (default every 60 s): shortened so a requeue on one machine takes seconds.
AuthInfo=cred_expire=30
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobRequeue=1
ReturnToService=2
KillWait=30
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then
    rm "$CONF.new"
  else
    mv "$CONF.new" "$CONF"
    say "wrote $CONF: node $NODE, $cpus CPUs, ${memory_mb} MB, partition local"
    if running slurmctld; then
      say "restarting the daemons to apply it"
      stop_daemon slurmd
      stop_daemon slurmctld
    fi
  fi
}

start_munge() {
  if running munged; then return; fi
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
}

start_slurm() {
  if ! running slurmctld; then
    say "starting slurmctld"
    /usr/sbin/slurmctld
  fi
  if ! running slurmd; then
    say "starting slurmd"
    /usr/sbin/slurmd
  fi
}

wait_idle() {
  local waited=0
  while [ "$waited" -lt 60 ]; do
    local state
    state=$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n1 || true)
    case "$state" in
      idle|mixed|allocated) say "node $NODE is $state"; return ;;
      down*|drain*)
        scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
    waited=$((waited + 1))
  done
  fail "node $NODE did not become idle within 60 s (state: '${state:-no answer}'); see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log"
}

smoke_test() {
  if ! timeout 120 srun --job-name=local-cluster-check --time=1 --mem=100M true; then
    fail "the node is up but a one-task job (srun true) failed; see $LOG_DIR/slurmd.log"
  fi
  say "a test job ran: ready (sbatch, srun, squeue work now)"
}

stop_daemon() {
  if running "$1"; then
    say "stopping $1"
    pkill -x "$1"
    for _ in $(seq 1 20); do running "$1" || return 0; sleep 0.5; done
    pkill -9 -x "$1" || true
  fi
}

case "${1:-}" in
  up)
    need_root up
    install_packages
    write_config
    start_munge
    start_slurm
    wait_idle
    smoke_test
    ;;
  down)
    need_root down
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    say "stopped"
    ;;
  status)
    for daemon in munged slurmctld slurmd; do
      if running "$daemon"; then say "$daemon: running"; else say "$daemon: stopped"; fi
    done
    if running slurmctld; then sinfo; squeue; fi
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
