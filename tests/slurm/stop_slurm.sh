#!/usr/bin/env bash
# Stop the test Slurm started by start_slurm.sh (jobs are cancelled first).
set -u
scancel --user root 2>/dev/null || true
for pidfile in /run/siamlab-slurmd.pid /run/siamlab-slurmctld.pid; do
    if [ -s "$pidfile" ]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
done
exit 0
