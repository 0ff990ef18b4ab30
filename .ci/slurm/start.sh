#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine (Debian 12, slurm 22.05), as root.
#
#   .ci/slurm/start.sh            # install missing packages, write configs, start daemons
#   .ci/slurm/start.sh --check    # exit 0 only if the cluster already answers, as configured here
#
# Daemons: munged (auth), mariadb + slurmdbd (accounting, so `sacct` works for the Snakemake
# SLURM plugin), slurmctld + slurmd with select/cons_tres. The node advertises one placeholder
# GPU gres per CPU so that `--gpus=1` requests from GPU-tagged rules are accepted and accounted
# without serialising them; jobs still run on the CPU. Idempotent: rerunning it on a running
# cluster only checks it (a cluster started with a different configuration is restarted).
set -euo pipefail

CLUSTER=${LOSSLAB_SLURM_CLUSTER:-losslab}
PARTITION=${LOSSLAB_SLURM_PARTITION:-debug}
ETC=/etc/slurm
STATE=/var/lib/losslab-slurm
LOGS=/var/log/losslab-slurm
HOST=$(hostname -s)

log() { echo "[slurm/start] $*" >&2; }

# ---- configuration --------------------------------------------------------------------------
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)

write_configs() {  # write_configs DIR: slurm.conf and gres.conf of this cluster
    local dir=$1
    cat >"$dir/slurm.conf" <<EOF
# Written by losslab .ci/slurm/start.sh: a single-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/losslab-slurmctld.pid
SlurmdPidFile=/run/losslab-slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStoreFlags=job_comment
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$CPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

    # Placeholder GPUs, one per CPU (empty files as their devices), so GPU requests are scheduled
    # and accounted but never keep two jobs from sharing the node.
    local i
    : >"$dir/gres.conf"
    for ((i = 0; i < CPUS; i++)); do
        echo "NodeName=$HOST Name=gpu File=$STATE/gpu$i" >>"$dir/gres.conf"
    done
}


cluster_ok() {
    local d want
    if [[ -e "$ETC/slurm.conf" ]] && grep -q 'losslab .ci/slurm/start.sh' "$ETC/slurm.conf"; then
        for d in slurmdbd slurmctld slurmd; do  # the daemons this script starts must all run
            [[ -s /run/losslab-$d.pid ]] && kill -0 "$(cat /run/losslab-$d.pid)" 2>/dev/null || return 1
        done
        # ... with the configuration this script writes now (one started with an older one restarts)
        want=$(mktemp -d)
        write_configs "$want"
        if ! cmp -s "$want/slurm.conf" "$ETC/slurm.conf" || ! cmp -s "$want/gres.conf" "$ETC/gres.conf"; then
            rm -rf "$want"
            return 1
        fi
        rm -rf "$want"
    fi
    command -v sinfo >/dev/null 2>&1 &&
        timeout 10 sinfo -h -p "$PARTITION" -o "%T" 2>/dev/null | grep -Eq '^(idle|mixed|allocated)$' &&
        timeout 10 sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"
}

if [[ "${1:-}" == "--check" ]]; then
    cluster_ok
    exit $?
fi

if cluster_ok; then
    log "cluster '$CLUSTER' is already up (partition $PARTITION)"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (it installs packages and starts system daemons)"
    exit 1
fi

# ---- packages -------------------------------------------------------------------------------
need=()
for cmd_pkg in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client slurmdbd:slurmdbd mariadbd:mariadb-server; do
    command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || need+=("${cmd_pkg#*:}")
done
if ((${#need[@]})); then
    log "installing munge slurm-wlm slurmdbd mariadb-server (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    # Daemons are started by this script, not by the package scripts.
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends munge slurm-wlm slurmdbd mariadb-server >/dev/null
    if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi

mkdir -p "$ETC" "$STATE"/{ctld,d} "$LOGS" /run/munge /run/mysqld /var/log/munge /var/lib/munge /etc/munge
chown mysql:mysql /run/mysqld 2>/dev/null || true
write_configs "$ETC"
for ((i = 0; i < CPUS; i++)); do : >"$STATE/gpu$i"; done

DBPASS=losslab-slurm
cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$LOGS/slurmdbd.log
PidFile=/run/losslab-slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$ETC/slurmdbd.conf"

# ---- daemons --------------------------------------------------------------------------------
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local n=$1 what=$2
    shift 2
    for ((i = 0; i < n * 5; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    log "timed out waiting for $what"
    return 1
}

if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating munge key"
    if command -v mungekey >/dev/null; then mungekey --create --force; else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    munged --force
    wait_for 10 munged bash -c 'munge -n | unmunge'
fi

if ! mysqladmin ping >/dev/null 2>&1; then
    log "starting mariadb"
    if [[ ! -d /var/lib/mysql/mysql ]]; then mysql_install_db --user=mysql >/dev/null; fi
    (mysqld_safe --user=mysql >/dev/null 2>&1 &)
    wait_for 60 mariadb mysqladmin ping
fi
mysql -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! pid_alive /run/losslab-slurmdbd.pid; then
    log "starting slurmdbd"
    slurmdbd
fi
wait_for 60 slurmdbd sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

# The cluster did not answer: restart the controller and node daemons with this configuration
# (a node left INVAL/DRAIN by an older configuration comes back clean).
for d in slurmd slurmctld; do
    if pid_alive /run/losslab-$d.pid; then
        pid=$(cat /run/losslab-$d.pid)
        kill "$pid" 2>/dev/null || true
        wait_for 15 "$d to stop" bash -c "! kill -0 $pid"
    fi
done
log "starting slurmctld"
slurmctld -c  # cold start: no stale node or job state from an earlier configuration
wait_for 30 slurmctld scontrol ping
log "starting slurmd"
slurmd
wait_for 30 "node $HOST" bash -c "sinfo -h -n $HOST -o %T | grep -Eq '^(idle|mixed|allocated)$'" || {
    log "node state: $(sinfo -h -n "$HOST" -o '%T %E')"
    exit 1
}
# Accounting: the cluster and root's default account exist (the plugin reads states with sacct).
wait_for 30 "accounting" bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx $CLUSTER"
log "cluster '$CLUSTER' is up: $(sinfo -h -o '%P %D %T %c CPUs %m MB %G')"
