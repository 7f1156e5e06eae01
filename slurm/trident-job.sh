#!/usr/bin/env bash
# Shared by the slurm/*.sbatch templates, sourced by the batch script once its parameters are
# set. Not run by itself. It provides:
#
#   trident_check_layout   world size (ranks Slurm gives the job) == DP x TP x PP, else a clear
#                          message and exit 2, before anything is launched
#   trident_job_dirs       the per-job directory RUN_DIR=$RUN_ROOT/<job name>-<job id> and, for
#                          this run of the job (a requeued job runs again), LOG_DIR=RUN_DIR/run-<n>
#   trident_launch ARGS    srun of slurm/trident-rank.sh -> trident-train ARGS on every rank,
#                          one log file per rank, with preemption handled (below)
#
# Preemption and time limits. `#SBATCH --signal=B:USR1@90` makes Slurm send USR1 to this batch
# shell 90 s before the time limit (`scancel --batch --signal=USR1 JOB` does the same by
# hand). The shell forwards it to srun, which passes it to every rank; trident-train finishes its
# step, writes a checkpoint into --checkpoint-dir, prints "preempted" and exits 0. The shell
# then requeues the job (REQUEUE_ON_PREEMPT=1, needs `#SBATCH --requeue`), and the next run
# starts with --resume from the latest checkpoint. `scancel --signal=USR1 JOB` (no --batch)
# signals the ranks directly: they checkpoint and the job ends without a requeue.
#
# Variables read (set by the template): TRIDENT_TRAIN, RUN_ROOT, CKPT_DIR, DP, TP, PP,
# SRUN_MPI (empty: the site's default), SRUN_EXTRA (array, optional), REQUEUE_ON_PREEMPT,
# DEVICE (cpu or cuda), GPU_MAP (local rank -> GPU, e.g. "0,1,2,3").

trident_log() { echo "trident-job: $*"; }
trident_die() {
  echo "trident-job: error: $*" >&2
  exit 2
}

trident_check_layout() {
  local world=${SLURM_NTASKS:-}
  [[ -n $world ]] || trident_die "SLURM_NTASKS is not set: submit this script with sbatch"
  local want=$((DP * TP * PP))
  if ((DP < 1 || TP < 1 || PP < 1)); then
    trident_die "DP=$DP TP=$TP PP=$PP: every axis must be at least 1"
  fi
  if ((world != want)); then
    trident_die "the job has $world ranks (SLURM_NTASKS) but DP x TP x PP = $DP x $TP x $PP = $want." \
      "Change DP/TP/PP or the job's --nodes/--ntasks-per-node so that they match."
  fi
  if [[ ${DEVICE:-cpu} == cuda ]]; then
    local per_node=${SLURM_NTASKS_PER_NODE:-}
    local gpus=${GPUS_PER_NODE:-0}
    if [[ -n $per_node && $per_node =~ ^[0-9]+$ ]] && ((per_node != gpus)); then
      trident_die "$per_node ranks per node but GPUS_PER_NODE=$gpus: one rank per GPU is expected"
    fi
    local n
    n=$(tr ',' '\n' <<<"$GPU_MAP" | grep -c .)
    ((n >= gpus)) || trident_die "GPU_MAP='$GPU_MAP' names $n GPUs, fewer than GPUS_PER_NODE=$gpus"
  fi
  [[ -x $TRIDENT_TRAIN ]] || trident_die "TRIDENT_TRAIN=$TRIDENT_TRAIN is not an executable (build it first)"
  trident_log "layout dp $DP x tp $TP x pp $PP = $world ranks on ${SLURM_JOB_NUM_NODES:-1} node(s): ok"
}

trident_job_dirs() {
  RUN_DIR=$RUN_ROOT/${SLURM_JOB_NAME:-trident}-${SLURM_JOB_ID:?}
  LOG_DIR=$RUN_DIR/run-${SLURM_RESTART_COUNT:-0}
  mkdir -p "$LOG_DIR" "$CKPT_DIR" || trident_die "cannot create $LOG_DIR or $CKPT_DIR"
  export RUN_DIR LOG_DIR
  {
    echo "job ${SLURM_JOB_ID} run ${SLURM_RESTART_COUNT:-0} started $(date -Is)"
    echo "nodes: ${SLURM_JOB_NODELIST:-?}"
    echo "layout: dp $DP tp $TP pp $PP, device ${DEVICE:-cpu}, checkpoints in $CKPT_DIR"
  } >"$LOG_DIR/job.txt"
  trident_log "logs: $LOG_DIR (rank-<r>.log per rank), checkpoints: $CKPT_DIR"
}

# Runs trident-train on every rank; returns srun's exit status. Sets TRIDENT_PREEMPTED=1 when
# this shell got USR1 (or TERM).
trident_launch() {
  TRIDENT_PREEMPTED=0
  local mpi=()
  [[ -n ${SRUN_MPI:-} ]] && mpi=(--mpi="$SRUN_MPI")
  local here
  here=$(dirname "${TRIDENT_JOB_LIB:?}")
  export TRIDENT_DEVICE_KIND=${DEVICE:-cpu} TRIDENT_GPU_MAP=${GPU_MAP:-}
  # Every rank writes its own file (stdout and stderr together): read them all after a failure.
  srun "${mpi[@]}" "${SRUN_EXTRA[@]}" --kill-on-bad-exit=1 \
    --output="$LOG_DIR/rank-%t.log" \
    bash "$here/trident-rank.sh" "$TRIDENT_TRAIN" "$@" &
  local pid=$!
  # USR1 (from --signal=B:USR1@N or scancel --batch): srun forwards it to every rank.
  # TERM (time limit, scancel, preemption by Slurm): Slurm signals the ranks itself.
  trap 'TRIDENT_PREEMPTED=1; trident_log "USR1: asking every rank to checkpoint and stop"; kill -USR1 '"$pid"' 2>/dev/null' USR1
  trap 'TRIDENT_PREEMPTED=1; trident_log "TERM: the ranks checkpoint and stop"' TERM
  local rc
  while :; do
    wait "$pid"
    rc=$?
    # A trapped signal interrupts wait with a status above 128 while srun still runs.
    if ((rc > 128)) && kill -0 "$pid" 2>/dev/null; then continue; fi
    break
  done
  trap - USR1 TERM
  trident_log "srun exited with status $rc"
  local f
  for f in "$LOG_DIR"/rank-*.log; do
    [[ -e $f ]] || continue
    if grep -qiE 'error|abort|terminate|signal [0-9]' "$f"; then
      trident_log "$(basename "$f") reports a problem:"
      grep -iE 'error|abort|terminate|signal [0-9]' "$f" | head -n 5 | sed 's/^/    /'
    fi
  done
  trident_log "rank 0's last lines:"
  tail -n 5 "$LOG_DIR/rank-0.log" 2>/dev/null | sed 's/^/    /'
  return "$rc"
}

# After trident_launch: requeue a job whose ranks stopped cleanly on USR1.
trident_requeue_if_preempted() {
  local rc=$1
  if ((TRIDENT_PREEMPTED && rc == 0)) && [[ ${REQUEUE_ON_PREEMPT:-1} == 1 ]]; then
    trident_log "checkpoint written; requeueing job $SLURM_JOB_ID (the next run resumes from $CKPT_DIR)"
    scontrol requeue "$SLURM_JOB_ID" || trident_log "scontrol requeue failed: resubmit by hand"
  fi
}
