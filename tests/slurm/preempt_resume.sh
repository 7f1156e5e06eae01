#!/usr/bin/env bash
# ctest slurm.preempt_resume: slurm/local-test.sbatch on a real one-node Slurm cluster
# started here (local_cluster.sh), through sbatch, srun and scancel:
#   1. a job whose ranks do not match DP x TP x PP fails before launching, with the message;
#   2. a 4-rank job (ranks from srun only: no mpirun) trains; `scancel --batch --signal=USR1`
#      (what `#SBATCH --signal=B:USR1@90` does near the time limit) makes every rank write a
#      checkpoint, print "preempted" and exit 0; the job ends COMPLETED with exit code 0;
#   3. a new submission resumes from that checkpoint at the next step and runs to the end;
#   4. with requeue on, the same signal (later in the run) makes the job requeue itself; its
#      second run resumes and finishes.
# Every step's loss (metrics.jsonl, 17 digits) of the resumed runs must equal, bit for bit, the
# loss of a run that was not interrupted at that step: jobs 2+3 stop at step n, job 4 at m > n.
# Exits 77 (ctest SKIP_RETURN_CODE) with the reason when Slurm cannot be started here.
#
#   bash tests/slurm/preempt_resume.sh TRIDENT_TRAIN SOURCE_DIR
# TRIDENT_SLURM_TEST_KEEP=1 keeps the work folder (cluster logs, job logs, checkpoints).
set -uo pipefail
train=$(realpath "${1:?usage: preempt_resume.sh TRIDENT_TRAIN SOURCE_DIR}")
src=$(realpath "${2:?usage: preempt_resume.sh TRIDENT_TRAIN SOURCE_DIR}")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/slurm/local_cluster.sh
source "$here/local_cluster.sh"

DEADLINE=$((SECONDS + ${TRIDENT_SLURM_TEST_SECONDS:-200}))  # below ctest's TIMEOUT
work=$(mktemp -d /tmp/trident-slurm-test.XXXXXX)
cleanup() {
  slurm_cluster_stop "$work/cluster"
  if [[ ${TRIDENT_SLURM_TEST_KEEP:-0} == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 1' INT TERM

say() { echo "[$((SECONDS))s] $*"; }
fail() {
  echo "FAIL: $*"
  local f
  for f in "$work"/slurm-*.out "$work"/runs/*/run-*/rank-0.log; do
    [[ -e $f ]] && { echo "--- $f"; tail -n 15 "$f"; }
  done
  for f in "$work"/cluster/log/slurmctld.log "$work"/cluster/log/slurmd.log; do
    [[ -e $f ]] && { echo "--- $f"; tail -n 8 "$f"; }
  done
  exit 1
}
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  "$@" || fail "$what"
  say "ok: $what"
}
time_left() { ((SECONDS < DEADLINE)); }

if ! slurm_cluster_start "$work/cluster" 8; then
  echo "SKIPPED: cannot start a local Slurm cluster: $SLURM_CLUSTER_ERROR"
  exit 77
fi
say "cluster up (SLURM_CONF=$SLURM_CONF)"

ckpt=$work/ckpt
# submit NAME VAR=VALUE...: the job id
submit() {
  local name=$1
  shift
  local vars
  vars=$(IFS=,; echo "$*")
  timeout 30 sbatch --parsable --job-name="$name" --chdir="$work" --output="$work/slurm-%x-%j.out" \
    --export="ALL,TRIDENT_HOME=$src,TRIDENT_TRAIN=$train,TRIDENT_RUN_ROOT=$work/runs,TRIDENT_CKPT_DIR=$ckpt,$vars" \
    "$src/slurm/local-test.sbatch"
}
field() { timeout 20 scontrol show job "$1" 2>/dev/null | grep -oE "(^| )$2=[^ ]*" | head -n 1 | cut -d= -f2; }
# Waits until job $1 is in a final state (or requeued, with $2=requeue); prints it.
wait_final() {
  local s
  while time_left; do
    s=$(field "$1" JobState)
    case "$s" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
        echo "$s"
        return 0
        ;;
      PENDING) if [[ ${2:-} == requeue && $(field "$1" Restarts) -ge 1 ]]; then echo REQUEUED; return 0; fi ;;
    esac
    sleep 0.5
  done
  echo "TIMEOUT-IN-TEST"
}
rundir() { echo "$work/runs/$1-$2/run-${3:-0}"; }
# "step loss" per line of a run's metrics.jsonl (losses as written: 17 significant digits).
losses() { sed -nE 's/^\{"step": ([0-9]+), "loss": ([^,]+),.*/\1 \2/p' "$1/out/metrics.jsonl" 2>/dev/null; }
steps_done() { losses "$1" | wc -l; }
# Waits until run directory $1 has logged at least $2 steps.
wait_steps() {
  while time_left; do
    (($(steps_done "$1") >= $2)) && return 0
    sleep 0.2
  done
  return 1
}
# The checkpoint named on the "preempted" line of a rank-0 log.
preempt_checkpoint() { grep "preempted" "$1" | grep -oE "$ckpt/step_[0-9]+\.h5" | head -n 1; }
step_of() {
  local b
  b=$(basename "$1" .h5)
  echo $((10#${b#step_}))
}

# --- 1. layout check before launch ---------------------------------------------------------------
job=$(submit layout TRIDENT_DP=3) || fail "sbatch refused the layout job"
state=$(wait_final "$job")
log=$work/slurm-layout-$job.out
check "4 ranks with DP=3 fail before launch (state $state, exit $(field "$job" ExitCode))" \
  test "$state" = FAILED -a "$(field "$job" ExitCode)" = 2:0
check "the message names the mismatch" grep -q "DP x TP x PP = 3 x 1 x 1 = 3" "$log"
check "nothing was launched" test ! -e "$work/runs/layout-$job/run-0/rank-0.log"

# --- 2. train, preempt with USR1 to the batch shell, checkpoint, exit 0 ---------------------------
# Long enough that USR1 (scancel -> slurmd -> batch shell -> srun -> ranks, about a second)
# always lands mid-run: at 40 steps a fast machine finished training first (1-2 s).
STEPS=200
job=$(submit first TRIDENT_STEPS=$STEPS TRIDENT_CKPT_EVERY=0 TRIDENT_REQUEUE=0) || fail "sbatch refused"
d1=$(rundir first "$job")
wait_steps "$d1" 4 || fail "training did not reach step 4"
say "job $job trains; scancel --batch --signal=USR1 $job"
timeout 20 scancel --batch --signal=USR1 "$job"
state=$(wait_final "$job")
log=$work/slurm-first-$job.out
check "preempted job COMPLETED with exit 0:0 (state $state, exit $(field "$job" ExitCode))" \
  test "$state" = COMPLETED -a "$(field "$job" ExitCode)" = 0:0
check "the batch script forwarded USR1" grep -q "USR1: asking every rank to checkpoint" "$log"
check "srun exited 0: every rank stopped cleanly" grep -q "srun exited with status 0" "$log"
for r in 0 1 2 3; do
  check "rank $r found itself from Slurm's variables" \
    grep -q "^trident-rank: rank $r of 4 (local rank $r" "$d1/rank-$r.log"
done
check "the 4 srun tasks formed one MPI world" grep -q "^layout: dp 4 x pp 1 x tp 1 on 4 ranks" "$d1/rank-0.log"
ck=$(preempt_checkpoint "$d1/rank-0.log")
check "rank 0 printed 'preempted' with the checkpoint path ($ck)" test -n "$ck"
check "the checkpoint exists" test -s "$ck"
n=$(step_of "$ck")
check "the checkpoint is at the last step trained ($n of $(steps_done "$d1"))" test "$n" = "$(steps_done "$d1")"
check "it stopped before the end" test "$n" -lt "$STEPS"

# --- 3. a new job resumes from the checkpoint ----------------------------------------------------
job=$(submit resume TRIDENT_STEPS=$STEPS TRIDENT_CKPT_EVERY=0 TRIDENT_REQUEUE=0) || fail "sbatch refused"
state=$(wait_final "$job")
d2=$(rundir resume "$job")
check "resumed job COMPLETED with exit 0:0 (state $state)" \
  test "$state" = COMPLETED -a "$(field "$job" ExitCode)" = 0:0
check "it resumed from $ck at step $n" grep -q "^resumed from $ck at step $n" "$d2/rank-0.log"
check "its first step is $((n + 1))" test "$(losses "$d2" | head -n 1 | cut -d' ' -f1)" = $((n + 1))
check "it ran to step $STEPS" test "$(losses "$d2" | tail -n 1 | cut -d' ' -f1)" = "$STEPS"
check "the final checkpoint was written" test -s "$(printf '%s/step_%08d.h5' "$ckpt" "$STEPS")"
say "job 2+3: loss $(losses "$d1" | head -n 1 | cut -d' ' -f2) at step 1, $(losses "$d2" | tail -n 1 | cut -d' ' -f2) at step $STEPS"

# --- 4. the template requeues itself on USR1, and the second run resumes -------------------------
ckpt=$work/ckpt-requeue
job=$(submit requeue TRIDENT_STEPS=$STEPS TRIDENT_CKPT_EVERY=0 TRIDENT_REQUEUE=1) || fail "sbatch refused"
d3=$(rundir requeue "$job" 0)
wait_steps "$d3" $((n + 4)) || fail "the requeue job did not reach step $((n + 4))"
timeout 20 scancel --batch --signal=USR1 "$job"
state=$(wait_final "$job" requeue)
check "USR1 made the job requeue itself (state $state, restarts $(field "$job" Restarts))" test "$state" = REQUEUED
check "the batch script said so" grep -q "requeueing job $job" "$work/slurm-requeue-$job.out"
# Slurm holds a requeued job for about two minutes (BeginTime); release it sooner, but not in
# the same second as the requeue: slurmd rejects a job credential created in the second its
# previous one was revoked ("Job credential revoked").
sleep 3
timeout 20 scontrol update jobid="$job" starttime=now >/dev/null 2>&1 || true
state=$(wait_final "$job")
d4=$(rundir requeue "$job" 1)
check "the requeued job COMPLETED with exit 0:0 (state $state)" \
  test "$state" = COMPLETED -a "$(field "$job" ExitCode)" = 0:0
ck=$(preempt_checkpoint "$d3/rank-0.log")
m=$(step_of "$ck")
check "its second run resumed from $ck at step $m" grep -q "^resumed from $ck at step $m" "$d4/rank-0.log"
check "and ran steps $((m + 1))..$STEPS" \
  test "$(losses "$d4" | head -n 1 | cut -d' ' -f1)-$(losses "$d4" | tail -n 1 | cut -d' ' -f1)" = "$((m + 1))-$STEPS"

# --- bit-exact resume -------------------------------------------------------------------------
# Jobs 2+3 (stopped at n) and job 4 (stopped at m > n) cover steps 1..STEPS; at every step at
# least one of them ran without an interruption just before it.
a=$( (losses "$d1"; losses "$d2") | sort -n)
b=$( (losses "$d3"; losses "$d4") | sort -n)
check "both trajectories have steps 1..$STEPS" \
  test "$(wc -l <<<"$a")" = "$STEPS" -a "$(wc -l <<<"$b")" = "$STEPS"
if [[ $a != "$b" ]]; then
  diff <(echo "$a") <(echo "$b") | head -n 10
  fail "losses differ between the run resumed at step $n and the one resumed at step $m"
fi
say "ok: every loss of steps 1..$STEPS equal to 17 digits across resumes at steps $n and $m"
say "all checks passed"
