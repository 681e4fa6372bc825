#!/usr/bin/env bash
# Start a single-node Slurm on this machine for the tests (as root): munged with a
# generated key, slurmctld and slurmd from a minimal slurm.conf, one partition "debug".
# Installs Debian's slurm-wlm and munge when missing. Idempotent: exits 0 at once when
# the node already answers. Stop it with tests/slurm/stop_slurm.sh.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "start_slurm.sh: needs root (slurmd runs jobs as their user)" >&2
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q slurm-wlm munge
fi
if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    exit 0
fi

host=$(hostname -s)
spool=/var/spool/siamlab-slurm
mkdir -p /etc/slurm /etc/munge /run/munge /var/lib/munge /var/log/munge \
    "$spool/ctld" "$spool/d" /var/log/slurm
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true

# munge: a key owned by munge, then the daemon
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- /usr/sbin/munged
    else
        /usr/sbin/munged --force
    fi
fi

# slurm.conf: this host, 2 CPUs, memory below what is free
free_mb=$(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)
mem_mb=$(( free_mb > 4096 ? 4096 : free_mb / 2 ))
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=siamlab
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
StateSaveLocation=$spool/ctld
SlurmdSpoolDir=$spool/d
SlurmctldPidFile=/run/siamlab-slurmctld.pid
SlurmdPidFile=/run/siamlab-slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=10
MinJobAge=30
NodeName=$host CPUs=2 RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        exit 0
    fi
    sleep 1
done
echo "start_slurm.sh: the node did not become idle; see /var/log/slurm/*.log" >&2
sinfo >&2 || true
exit 1
