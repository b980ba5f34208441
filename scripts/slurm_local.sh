#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for pybench's Slurm tests and for trying
# `--executor slurm` without a cluster.  Needs root and Debian's packages:
#   apt-get install slurmctld slurmd slurm-client munge
# Usage: scripts/slurm_local.sh start|stop|status
# `start` writes /etc/slurm/slurm.conf (only if absent or written by this script: a real cluster's
# configuration is never touched), generates a munge key, and starts munged, slurmctld and slurmd
# without systemd; it returns once the node accepts jobs.  `stop` stops the daemons it started (munged
# only if start started it: one that was already running belongs to someone else).
set -euo pipefail

STATE=${PYBENCH_SLURM_STATE:-/var/tmp/pybench-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by pybench scripts/slurm_local.sh"
MUNGE_SOCKET_DIR=/run/munge

die() { echo "slurm_local: $*" >&2; exit 1; }

write_conf() {
    if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; leaving it alone"
    fi
    local host node
    host=$(hostname -s)
    # slurmd -C describes this machine's real sockets, cores and memory: the node line must match it.
    node=$(slurmd -C | head -n 1)
    [[ $node == NodeName=* ]] || die "slurmd -C did not describe this node: $node"
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
    cat > "$CONF" <<EOF
$MARK
ClusterName=pybench
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to scontrol for an hour: pybench reads a job's end state from it
# where there is no accounting database (sacct).
MinJobAge=3600
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
# More partitions on the same node: a matrix sent to several partitions runs locally too.
PartitionName=p2 Nodes=$host MaxTime=INFINITE State=UP
PartitionName=p3 Nodes=$host MaxTime=INFINITE State=UP
PartitionName=p4 Nodes=$host MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if munge -n </dev/null >/dev/null 2>&1; then return; fi
    mkdir -p /etc/munge "$MUNGE_SOCKET_DIR" /var/lib/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge "$MUNGE_SOCKET_DIR" /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged
    else
        munged --force
    fi
    for _ in $(seq 50); do
        if munge -n </dev/null >/dev/null 2>&1; then
            [[ -s $MUNGE_SOCKET_DIR/munged.pid ]] && cp "$MUNGE_SOCKET_DIR/munged.pid" "$STATE/munged.pid"  # ours: stop ends it
            return
        fi
        sleep 0.1
    done
    die "munged did not start"
}

wait_for_node() {
    for _ in $(seq 120); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then return; fi
        sleep 0.5
    done
    die "the node did not become idle within 60 s; see $STATE/log"
}

installed() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null
}

start() {
    [[ $(id -u) == 0 ]] || die "start needs root (the daemons run as root here)"
    if ! installed && command -v apt-get >/dev/null; then
        echo "slurm_local: installing Debian's slurmctld slurmd slurm-client munge" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge >/dev/null
    fi
    installed || die "install slurmctld slurmd slurm-client munge first (apt-get install ...)"
    write_conf
    start_munge
    pgrep -F "$STATE/slurmctld.pid" >/dev/null 2>&1 || slurmctld -c   # -c: a clean state, no old jobs
    pgrep -F "$STATE/slurmd.pid" >/dev/null 2>&1 || slurmd
    wait_for_node
    echo "slurm_local: one node up ($(sinfo -h -o '%P %D nodes, %c CPUs, %T'))"
}

stop() {
    local pidfile pid
    for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munged.pid"; do
        [[ -s $pidfile ]] || continue
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    done
    echo "slurm_local: stopped"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) sinfo && squeue ;;
    *) die "usage: $0 start|stop|status" ;;
esac
