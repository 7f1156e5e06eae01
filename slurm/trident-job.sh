#!/usr/bin/env bash
# Shared by the slurm/*.sbatch templates, sourced by the batch script once its parameters are
# set. Not run by itself. It provides:
#
#   trident_check_layout   world size (ranks Slurm gives the job) == DP x TP x PP, else a clear
#                          message and exit 2, before anything is launched
#   trident_job_dirs       the per-job directory RUN_DIR=$RUN_ROOT/<job name>-<job id> and, for
#                          this run of the job (a requeued job runs again), LOG_DIR=RUN_DIR/run-<n>
#   trident_launch ARGS    srun of slurm/trident-rank.sh -> trident-train ARGS on every rank,
#                          one log file per rank, with preemption handled and the CPUs per rank
#                          passed on (below); first warns when a checkpoint may not fit in the
#                          USR1 lead time
#
# Preemption and time limits. `#SBATCH --signal=B:USR1@90` makes Slurm send USR1 to this batch
# shell 90 s before the time limit (`scancel --batch --signal=USR1 JOB` does the same by
# hand). The shell forwards it to srun, which passes it to every rank; trident-train finishes its
# step, writes a checkpoint into --checkpoint-dir, prints "preempted" and exits 0. The shell
# then requeues the job (REQUEUE_ON_PREEMPT=1, needs `#SBATCH --requeue`), and the next run
# starts with --resume from the latest checkpoint. `scancel --signal=USR1 JOB` (no --batch)
# signals the ranks directly: they checkpoint and the job ends without a requeue.
#
# The lead time (90 s) must cover the step in flight and the checkpoint save. Before launching,
# trident_launch predicts the save time: the parameter count from trident-planner (the job's
# --model and model flags) x 12 bytes (the checkpoint holds fp32 weights and AdamW's exp_avg and
# exp_avg_sq, parallel/include/trident/parallel/distributed_checkpoint.hpp) over
# CKPT_WRITE_GBPS (world rank 0 writes the file alone), and warns on stderr when it exceeds the
# lead. Slurm does not tell the job its --signal (22.05: no variable, not in `scontrol show
# job`), so the lead is TRIDENT_SIGNAL_LEAD when set, else the @N of SBATCH_SIGNAL (the
# environment form of --signal: it overrides the #SBATCH line and reaches the job), else the
# template's SIGNAL_LEAD (the value of its #SBATCH --signal line).
#
# CPUs. Since Slurm 22.05 srun does not take --cpus-per-task from the job (SLURM_CPUS_PER_TASK):
# without it every rank of the step gets one CPU (with --cpu-bind=cores, one core) for its
# OpenMP threads and its communication threads. trident_launch passes --cpus-per-task to srun
# and sets OMP_NUM_THREADS to THREADS, or to the CPUs per task less one for the communication
# threads (each communicator progresses on its own thread). Every rank prints its CPU set.
#
# Variables read (set by the template): TRIDENT_TRAIN, TRIDENT_PLANNER, RUN_ROOT, CKPT_DIR, DP,
# TP, PP, SRUN_MPI (empty: the site's default), SRUN_EXTRA (array, optional), REQUEUE_ON_PREEMPT,
# DEVICE (cpu or cuda), GPU_MAP (local rank -> GPU, e.g. "0,1,2,3"), THREADS (empty: CPUs per
# task - 1), SIGNAL_LEAD (s), CKPT_WRITE_GBPS (GB/s); from the environment TRIDENT_SIGNAL_LEAD
# and SBATCH_SIGNAL (above).

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

# The seconds between USR1 and the time limit (where from: the top of this file); Slurm may send the
# signal up to 60 s earlier, never later. Fails, with a message, on a value that is not seconds.
trident_signal_lead() {
  local lead from
  if [[ -n ${TRIDENT_SIGNAL_LEAD:-} ]]; then
    lead=$TRIDENT_SIGNAL_LEAD from=TRIDENT_SIGNAL_LEAD
  elif [[ -n ${SBATCH_SIGNAL:-} ]]; then
    lead=60 from=SBATCH_SIGNAL  # Slurm's lead for a --signal without @
    [[ $SBATCH_SIGNAL == *@* ]] && lead=${SBATCH_SIGNAL##*@}
  else
    lead=${SIGNAL_LEAD:-90} from=SIGNAL_LEAD
  fi
  if [[ ! $lead =~ ^[0-9]+$ ]]; then
    echo "trident-job: warning: $from='${!from}' gives no lead time in seconds" >&2
    return 1
  fi
  echo "$lead"
}

# trident_check_save_time TRAIN_ARGS...: one line on stderr when the predicted checkpoint save
# time exceeds the USR1 lead time (the ranks would still be writing when the time limit kills
# them), else one line on stdout. Never stops the job.
trident_check_save_time() {
  local lead
  lead=$(trident_signal_lead) || return 0
  # The model flags and --seq of trident-train's arguments, which trident-planner takes too.
  local args=("$@") planner_args=() i
  for ((i = 0; i < ${#args[@]}; ++i)); do
    case ${args[i]} in
      --model | --vocab | --block | --layers | --heads | --width | --seq)
        planner_args+=("${args[i]}" "${args[i + 1]:-}")
        ;;
      --model=* | --vocab=* | --block=* | --layers=* | --heads=* | --width=* | --seq=*)
        planner_args+=("${args[i]}")
        ;;
    esac
  done
  if [[ ! -x ${TRIDENT_PLANNER:-} ]]; then
    trident_log "checkpoint save time not checked against the ${lead} s USR1 lead:" \
      "no trident-planner at '${TRIDENT_PLANNER:-}' (TRIDENT_PLANNER)"
    return 0
  fi
  local params
  params=$(timeout 60 "$TRIDENT_PLANNER" "${planner_args[@]}" --gpus 1 --global-batch 1 --json \
    2>&1 | grep -m 1 -oE '"parameters": *[0-9]+' | grep -oE '[0-9]+$')
  if [[ -z $params ]]; then
    trident_log "checkpoint save time not checked: trident-planner ${planner_args[*]} gave no parameter count"
    return 0
  fi
  local gbps=${CKPT_WRITE_GBPS:-1} verdict fits what suggest
  # 12 bytes a parameter: fp32 weights, exp_avg, exp_avg_sq (see the top of this file). The
  # suggested lead: twice the save, plus 60 s for the step in flight, in whole half-minutes.
  verdict=$(awk -v p="$params" -v bw="$gbps" -v lead="$lead" 'BEGIN {
    if (bw + 0 <= 0) { print "bad"; exit }
    gb = p * 12 / 1e9; s = gb / bw
    printf "%s|%.1fM parameters, %.1f GB, about %." (s < 10 ? 1 : 0) "f s at %s GB/s|%d\n",
      (s > lead ? "over" : "ok"), p / 1e6, gb, s, bw, 30 * int((2 * s + 60 + 29) / 30) }')
  IFS='|' read -r fits what suggest <<<"$verdict"
  case $fits in
    over)
      echo "trident-job: warning: the checkpoint save ($what) may outlast the ${lead} s between" \
        "USR1 and the time limit, and the job be killed while saving: submit with a longer lead," \
        "e.g. SBATCH_SIGNAL=B:USR1@$suggest sbatch ..., or set TRIDENT_CKPT_WRITE_GBPS to your file system's speed" >&2
      ;;
    ok) trident_log "checkpoint save: $what, within the ${lead} s USR1 lead" ;;
    *) echo "trident-job: warning: CKPT_WRITE_GBPS='$gbps' is not a positive number of GB/s" >&2 ;;
  esac
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
  trident_check_save_time "$@"
  # CPUs per rank: srun (Slurm >= 22.05) no longer reads the job's SLURM_CPUS_PER_TASK.
  local cpus=() per_task=${SLURM_CPUS_PER_TASK:-}
  [[ $per_task =~ ^[0-9]+$ ]] && cpus=(--cpus-per-task="$per_task")
  # OpenMP threads: THREADS, else the CPUs per task less one for the communication threads.
  OMP_NUM_THREADS=${THREADS:-}
  if [[ -z $OMP_NUM_THREADS ]]; then
    OMP_NUM_THREADS=1
    [[ $per_task =~ ^[0-9]+$ ]] && ((per_task > 1)) && OMP_NUM_THREADS=$((per_task - 1))
  fi
  export OMP_NUM_THREADS
  trident_log "${per_task:-?} CPUs per rank (srun ${cpus[*]:-without --cpus-per-task}), OMP_NUM_THREADS=$OMP_NUM_THREADS"
  # Every rank writes its own file (stdout and stderr together): read them all after a failure.
  srun "${mpi[@]}" "${cpus[@]}" "${SRUN_EXTRA[@]}" --kill-on-bad-exit=1 \
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
