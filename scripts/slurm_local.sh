#!/usr/bin/env bash
# A one-node SLURM on this machine, for `make test-cluster` (tests/test_slurm.py).
#
#   scripts/slurm_local.sh up      install Debian's slurmctld/slurmd/slurm-client/munge if missing,
#                                  write $SLURM_LOCAL_DIR/slurm.conf, start munged (as user munge,
#                                  unless one already answers), slurmctld and slurmd, wait until
#                                  the node is idle. Running it again while up changes nothing.
#   scripts/slurm_local.sh down    stop the daemons `up` started (by their pid files), nothing else
#   scripts/slurm_local.sh env     print `export SLURM_CONF=...` (eval it to use the clients)
#
# The clients (sinfo, sbatch, srun, scontrol, and submitit through them) find this cluster through
# SLURM_CONF, which the Makefile exports; /etc/slurm/ is never written, so a machine that is a
# real cluster's login node keeps talking to its cluster. Jobs inherit SLURM_CONF (sbatch exports
# the environment), so Lightning's `scontrol requeue` inside a job reaches this controller too.
# Needs root (daemons, packages): CI runs as root; elsewhere it re-runs itself through sudo.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-${TMPDIR:-/tmp}/trainlab-slurm}
CONF=$DIR/slurm.conf
MUNGE_DIR=$DIR/munge           # munged's pid and log (owned by user munge)
MUNGE_SOCKET=/run/munge/munge.socket.2   # the socket Slurm's auth/munge uses by default
PACKAGES=(slurmctld slurmd slurm-client munge)
WAIT_S=60
export SLURM_CONF=$CONF

log() { echo "slurm_local: $*" >&2; }

as_root() {
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { log "needs root (daemons and packages); no sudo here"; exit 1; }
        exec sudo --preserve-env=SLURM_LOCAL_DIR,TMPDIR "$0" "$@"
    fi
}

alive() {  # alive PIDFILE: the process it names is running
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return
    log "installing ${missing[*]}"
    apt-get update -qq
    # no recommends: the basic plugins (a dependency) hold everything slurm.conf below names
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_conf() {
    local host node_line
    host=$(hostname -s)
    # the node as slurmd sees it (CPUs, sockets/cores/threads, RealMemory in MB): a node declared
    # larger than slurmd measures would be drained
    node_line=$(slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+ //')
    local cpus mem_mb
    cpus=$(sed -E 's/.*CPUs=([0-9]+).*/\1/' <<<"$node_line")
    mem_mb=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$node_line")
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat >"$CONF.new" <<EOF
# written by scripts/slurm_local.sh: one node, this machine
ClusterName=trainlab-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it may start again (default 120), then until
# the scheduler's next pass (default every 60 s): both short, for tests that requeue
AuthInfo=cred_expire=15
SchedulerParameters=sched_interval=2,bf_interval=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job that gives no --mem gets this per CPU, not the whole node (so two 1-CPU jobs fit)
DefMemPerCPU=$((mem_mb / cpus))
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
# seconds between SIGTERM and SIGKILL at a time limit or requeue: time to write last.ckpt
KillWait=15
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 $node_line State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.new" "$CONF"
}

munge_answers() {
    [ -S "$MUNGE_SOCKET" ] && munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1
}

start_munged() {
    if munge_answers; then
        return  # ours from an earlier `up`, or the machine's own: either way not started here
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 "$MUNGE_DIR"
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log"
    for _ in $(seq 50); do munge_answers && return; sleep 0.1; done
    log "munged does not answer; its log:"; tail -n 20 "$MUNGE_DIR/munged.log" >&2 || true
    exit 1
}

start_daemon() {  # start_daemon NAME [ARGS]: slurmctld or slurmd, unless its pid file names a live one
    local name=$1
    shift
    alive "$DIR/$name.pid" && return
    log "starting $name"
    "/usr/sbin/$name" -f "$CONF" "$@"
}

wait_idle() {
    local state=""
    for _ in $(seq $((WAIT_S * 2))); do
        state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
        case $state in
            idle|mixed|allocated) log "node $(hostname -s) is $state ($(sinfo -V))"; return ;;
        esac
        sleep 0.5
    done
    log "node not idle after ${WAIT_S}s (state '${state:-no answer}'); logs:"
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
}

up() {
    as_root up
    install_packages
    mkdir -p "$DIR"
    if alive "$DIR/slurmctld.pid"; then
        [ -f "$CONF" ] || { log "$DIR/slurmctld.pid is live but $CONF is missing"; exit 1; }
    else
        write_conf  # only while no controller reads it
    fi
    start_munged
    start_daemon slurmctld -c  # -c: a fresh start forgets the jobs of an earlier `up`
    start_daemon slurmd
    wait_idle
    echo "export SLURM_CONF=$CONF"
}

stop() {  # stop PIDFILE NAME
    local pidfile=$1 name=$2 pid
    alive "$pidfile" || { rm -f "$pidfile"; return; }
    pid=$(cat "$pidfile")
    log "stopping $name ($pid)"
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    rm -f "$pidfile"
}

down() {
    as_root down
    # slurmd first: it signals the job steps it runs; then the controller, then munged if ours
    stop "$DIR/slurmd.pid" slurmd
    stop "$DIR/slurmctld.pid" slurmctld
    stop "$MUNGE_DIR/munged.pid" munged
}

case ${1:-} in
    up) up ;;
    down) down ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|env   (state in \$SLURM_LOCAL_DIR, default $DIR)" >&2; exit 2 ;;
esac
