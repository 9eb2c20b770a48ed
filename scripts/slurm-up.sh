#!/usr/bin/env bash
# A single-node Slurm cluster on this host for the Slurm executor's tests (and for trying it):
# munged, slurmctld and slurmd as root, one node declaring one GPU (a stand-in device file, so
# Slurm's gres/gpu plugin allocates it and sets CUDA_VISIBLE_DEVICES like on a GPU node).
# Idempotent: a cluster already up with the same configuration is left as it is.
# Installs slurm-wlm and munge first when missing (scripts/system-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "slurm-up.sh must run as root" >&2; exit 1; }
command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 || scripts/system-deps.sh

host=$(hostname -s)
cpus=${CHARTER_SLURM_CPUS:-8}      # more slots than cores: the test jobs mostly sleep
mem=${CHARTER_SLURM_MEM_MB:-4096}
conf=/etc/slurm
state=/var/lib/charter-slurm
mkdir -p "$conf" "$state/ctld" "$state/d" "$state/dev" /var/log/slurm /run/munge
# A stand-in for /dev/nvidia0: Slurm takes the device index from the file name.
[ -e "$state/dev/nvidia0" ] || mknod "$state/dev/nvidia0" c 1 3   # same device as /dev/null

want=$(mktemp)
cat >"$want" <<CONF
# Written by Charter's scripts/slurm-up.sh
ClusterName=charter
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
KillWait=5
MinJobAge=600
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
gres=$(mktemp)
echo "NodeName=$host Name=gpu File=$state/dev/nvidia0" >"$gres"

changed=0
cmp -s "$want" "$conf/slurm.conf" || { cp "$want" "$conf/slurm.conf"; changed=1; }
cmp -s "$gres" "$conf/gres.conf" || { cp "$gres" "$conf/gres.conf"; changed=1; }
rm -f "$want" "$gres"
# cgroup.conf is read even with proctrack/linuxproc on some builds: keep it minimal.
[ -e "$conf/cgroup.conf" ] || echo "CgroupPlugin=autodetect" >"$conf/cgroup.conf"

# a daemon is running when the pid in its pid file is alive
running() {
  local pidfile
  case "$1" in
    munged) pidfile=/run/munge/munged.pid ;;
    *) pidfile=/run/$1.pid ;;
  esac
  [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

if ! running munged; then
  chown munge:munge /run/munge /etc/munge/munge.key 2>/dev/null || true
  chmod 0711 /run/munge
  runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done

if [ "$changed" -eq 1 ]; then
  for d in slurmctld slurmd; do
    if running "$d"; then kill "$(cat "/run/$d.pid")"; fi
  done
  for _ in $(seq 50); do running slurmctld || running slurmd || break; sleep 0.2; done
fi
running slurmctld || slurmctld
running slurmd || slurmd

for _ in $(seq 150); do
  st=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
  case "$st" in
    idle|mix|alloc) echo "slurm: node $host $st"; exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
echo "slurm did not come up; see /var/log/slurm/" >&2
sinfo -N -l >&2 || true
exit 1
