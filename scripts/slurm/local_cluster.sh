#!/bin/bash
# A real SLURM cluster on this machine (slurmctld + slurmd + munge), for trying `launcher=slurm`
# and `scripts/slurm/train.sbatch` and for the tests marked `slurm`: one node, and two more emulated
# nodes (SLURM's multiple-slurmd setup) for jobs with --nodes=2.
#
#   sudo scripts/slurm/local_cluster.sh up       # install if missing, configure, start, wait for an idle node
#   sudo scripts/slurm/local_cluster.sh status   # daemons and `sinfo`
#   sudo scripts/slurm/local_cluster.sh down     # stop the daemons (configuration and packages stay)
#
# Needs root and Debian/Ubuntu (`apt-get install slurm-wlm munge`). `up` writes /etc/slurm/slurm.conf
# for this host only when that file is missing or was written by this script (a marker line), so
# an existing cluster's configuration is never touched. The node <host> has this host's CPUs and
# memory, partition `local` (the default). Partition `two` holds nodes <host>-n1 and <host>-n2: two
# more slurmd daemons on this host (`slurmd -N <name>`, each on its own port, half the memory, one
# CPU; declared on top of <host>'s resources, which nothing enforces: TaskPlugin=task/none), their
# names resolving to 127.0.0.1 through /etc/hosts lines this script adds. Requeue allowed; jobs run
# as the submitting user. Every step is idempotent: `up` on a running cluster only checks it.
# Logs: /var/log/slurm/ (slurmd-<node>.log per node).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# written by embedding-trainer scripts/slurm/local_cluster.sh"
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
NODE=$(hostname -s)
EMULATED=("$NODE-n1" "$NODE-n2")  # partition `two`, slurmd ports 6821 and 6822
NODES=("$NODE" "${EMULATED[@]}")

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
SlurmdSpoolDir=$SPOOL_DIR/%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
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
NodeName=${EMULATED[0]},${EMULATED[1]} NodeHostname=$NODE NodeAddr=127.0.0.1 Port=6821,6822 CPUs=1 RealMemory=$((memory_mb / 2)) State=UNKNOWN
PartitionName=two Nodes=${EMULATED[0]},${EMULATED[1]} MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then
    rm "$CONF.new"
  else
    mv "$CONF.new" "$CONF"
    say "wrote $CONF: node $NODE, $cpus CPUs, ${memory_mb} MB, partition local; partition two: ${EMULATED[*]}"
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

# Whether $CONF declares the emulated nodes (a configuration this script wrote).
has_two_nodes() { grep -qF "NodeName=${EMULATED[0]}," "$CONF" 2>/dev/null; }

# The emulated nodes' names resolve to this host, as node names do on a cluster (Lightning's
# MASTER_ADDR is the job's first node name).
add_host_names() {
  local name
  for name in "${EMULATED[@]}"; do
    grep -qE "^127\.0\.0\.1[[:space:]].*[[:space:]]$name([[:space:]]|$)" /etc/hosts \
      || echo "127.0.0.1 $name  $MARKER" >>/etc/hosts || return 1
  done
}

# The arguments of each slurmd to run, one line each: `-N <node>` for every node when the emulated
# nodes are configured (three daemons share this host name), else none (slurmd finds its node).
slurmd_args() {
  if has_two_nodes; then printf -- '-N %s\n' "${NODES[@]}"; else echo; fi
}

slurmd_running() { pgrep -f "^/usr/sbin/slurmd${1:+ $1}\$" >/dev/null; }

start_slurm() {
  if ! running slurmctld; then
    say "starting slurmctld"
    /usr/sbin/slurmctld
  fi
  local args
  while IFS= read -r args; do
    if ! slurmd_running "$args"; then
      say "starting slurmd${args:+ $args}"
      # shellcheck disable=SC2086  # args is empty or `-N <node>`
      /usr/sbin/slurmd $args || say "warning: slurmd $args did not start; see $LOG_DIR/"
    fi
  done < <(slurmd_args)
}

wait_idle() {
  local waited=0 node=$1
  while [ "$waited" -lt 60 ]; do
    local state
    state=$(sinfo --noheader --nodes="$node" --format=%T 2>/dev/null | head -n1 || true)
    case "$state" in
      idle|mixed|allocated) say "node $node is $state"; return ;;
      down*|drain*)
        scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
    waited=$((waited + 1))
  done
  say "node $node did not become idle within 60 s (state: '${state:-no answer}'); see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd-$node.log"
  return 1
}

smoke_test() {
  if ! timeout 120 srun --job-name=local-cluster-check --time=1 --mem=100M true; then
    fail "the node is up but a one-task job (srun true) failed; see $LOG_DIR/"
  fi
  say "a test job ran: ready (sbatch, srun, squeue work now)"
}

# Partition `two` is an extra: when its nodes or a two-node job fail, `up` says so, sets the
# partition DOWN (the two-node tests then skip) and keeps the one-node cluster.
check_two_nodes() {
  has_two_nodes || return 0
  scontrol update PartitionName=two State=UP  # a DOWN partition (an earlier `up`) takes no job
  if add_host_names && wait_idle "${EMULATED[0]}" && wait_idle "${EMULATED[1]}" \
     && timeout 120 srun --job-name=local-cluster-check --partition=two --nodes=2 --time=1 --mem=100M true; then
    say "a two-node job ran on partition two (${EMULATED[*]})"
  else
    scontrol update PartitionName=two State=DOWN || true
    say "warning: partition two does not work (set DOWN; two-node tests skip); see $LOG_DIR/slurmd-${EMULATED[0]}.log"
  fi
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
    wait_idle "$NODE" || fail "the cluster is not usable"
    smoke_test
    check_two_nodes
    ;;
  down)
    need_root down
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
    say "stopped"
    ;;
  status)
    for daemon in munged slurmctld; do
      if running "$daemon"; then say "$daemon: running"; else say "$daemon: stopped"; fi
    done
    while IFS= read -r args; do
      if slurmd_running "$args"; then say "slurmd${args:+ $args}: running"; else say "slurmd${args:+ $args}: stopped"; fi
    done < <(slurmd_args)
    if running slurmctld; then sinfo; squeue; fi
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
