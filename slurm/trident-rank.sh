#!/usr/bin/env bash
# One rank of a Trident job, started by srun (see trident-job.sh): picks this rank's GPU from
# its node-local rank, says who it is, and becomes trident-train.
#
#   bash slurm/trident-rank.sh TRIDENT_TRAIN [trident-train arguments...]
#
# The rank, world size and local rank come from Slurm's SLURM_PROCID / SLURM_NTASKS /
# SLURM_LOCALID (trident-train reads the same variables, parallel/src/launch_env.cpp).
# With TRIDENT_DEVICE_KIND=cuda the rank gets `--device cuda:G`, G = TRIDENT_GPU_MAP[local
# rank] ("3,2,1,0" puts local rank 0 on GPU 3). Every GPU of the node stays visible to every
# rank (srun --gpu-bind=none): a rank that could see only its own GPU could not use CUDA IPC or
# NVLink to its neighbours.
#
# It prints its CPU set (Cpus_allowed_list: what srun's --cpus-per-task and --cpu-bind left it)
# and warns when OMP_NUM_THREADS asks for more threads than that set has CPUs.
set -euo pipefail
train=${1:?usage: trident-rank.sh TRIDENT_TRAIN [args...]}
shift

rank=${SLURM_PROCID:?not started by srun}
world=${SLURM_NTASKS:?not started by srun}
local_rank=${SLURM_LOCALID:?not started by srun}
device_args=()
where=cpu
if [[ ${TRIDENT_DEVICE_KIND:-cpu} == cuda ]]; then
  IFS=, read -r -a gpus <<<"${TRIDENT_GPU_MAP:-0,1,2,3}"
  if ((local_rank >= ${#gpus[@]})); then
    echo "trident-rank: local rank $local_rank has no GPU in TRIDENT_GPU_MAP=${TRIDENT_GPU_MAP:-}" >&2
    exit 2
  fi
  where=cuda:${gpus[$local_rank]}
  device_args=(--device "$where")
fi
cpus=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status 2>/dev/null || true)
ncpus=0
IFS=, read -r -a ranges <<<"$cpus"
for r in "${ranges[@]}"; do
  if [[ $r =~ ^([0-9]+)-([0-9]+)$ ]]; then
    ncpus=$((ncpus + BASH_REMATCH[2] - BASH_REMATCH[1] + 1))
  elif [[ $r =~ ^[0-9]+$ ]]; then
    ncpus=$((ncpus + 1))
  fi
done
threads=${OMP_NUM_THREADS:-}
echo "trident-rank: rank $rank of $world (local rank $local_rank on $(hostname -s), $where)," \
  "cpus ${cpus:-?} ($ncpus), OMP_NUM_THREADS ${threads:-unset}"
if [[ $threads =~ ^[0-9]+$ ]] && ((ncpus > 0 && threads > ncpus)); then
  echo "trident-rank: warning: rank $rank may run on $ncpus CPU(s) ($cpus), fewer than" \
    "OMP_NUM_THREADS=$threads: its threads share cores (srun without --cpus-per-task? Slurm >= 22.05" \
    "does not take it from the job)" >&2
fi
exec "$train" "$@" "${device_args[@]}"
