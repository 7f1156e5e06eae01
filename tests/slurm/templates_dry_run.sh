#!/usr/bin/env bash
# ctest slurm.templates_dry_run: the Perlmutter templates run as a Slurm job would run them,
# with srun, scontrol and module replaced by stand-ins that record what they are asked (no
# Slurm, no GPU needed):
#   * a matching layout launches every rank's trident-train with the template's dp/tp/pp, the
#     checkpoint flags and `--device cuda:G`, G from the GPU map for the local rank;
#   * every flag given to trident-train is one that `trident-train --help` lists;
#   * a world size that is not dp x tp x pp stops the job with exit 2 and a message, before srun;
#   * every rank of a node runs on more than one CPU when the job asks for --cpus-per-task > 1:
#     the srun stand-in binds CPUs as Slurm >= 22.05 does, from srun's own -c/--cpus-per-task or
#     SRUN_CPUS_PER_TASK but never from the job's SLURM_CPUS_PER_TASK, so a launcher that leaves
#     srun without it gets one CPU per rank; each rank prints its CPU set, and OMP_NUM_THREADS is
#     the CPUs per task less one;
#   * the predicted checkpoint save time (trident-planner's parameter count x 12 bytes over
#     CKPT_WRITE_GBPS) is checked against the USR1 lead time, from SIGNAL_LEAD, SBATCH_SIGNAL or
#     TRIDENT_SIGNAL_LEAD: one warning line on stderr when it does not fit, none when it does;
#   * USR1 to the batch shell reaches srun and the job requeues itself.
#
#   bash tests/slurm/templates_dry_run.sh TRIDENT_TRAIN SOURCE_DIR [TRIDENT_PLANNER]
# (TRIDENT_PLANNER: default ../tools/trident-planner from TRIDENT_TRAIN's folder.)
set -uo pipefail
train=$(realpath "${1:?usage: templates_dry_run.sh TRIDENT_TRAIN SOURCE_DIR [TRIDENT_PLANNER]}")
src=$(realpath "${2:?usage: templates_dry_run.sh TRIDENT_TRAIN SOURCE_DIR [TRIDENT_PLANNER]}")
planner=$(realpath -m "${3:-$(dirname "$train")/../tools/trident-planner}")
[[ -x $planner ]] || {
  echo "FAIL: no trident-planner at $planner (third argument)"
  exit 1
}
work=$(mktemp -d /tmp/trident-slurm-dry.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}
ok() { echo "ok: $*"; }

mkdir -p "$work/bin"
# srun stand-in: records its arguments, then runs the rank wrapper (the part after the srun
# options) once for each local rank of the first node, one after another, like the tasks of the
# step. With --cpu-bind (not none) each task is bound, with taskset, to CPUs-per-task CPUs of
# those this test may use (all of them when there are fewer; neighbouring tasks get the next
# ones, wrapping around). CPUs per task as Slurm >= 22.05 takes them: srun's -c/--cpus-per-task,
# else SRUN_CPUS_PER_TASK, else 1; the job's SLURM_CPUS_PER_TASK is not read.
# With FAKE_SRUN_SLEEP it first waits (to be signalled), exiting 0 on USR1 as trident-train does.
cat >"$work/bin/srun" <<'EOF'
#!/usr/bin/env bash
printf '%s\n' "$@" >"$FAKE_LOG/srun.args"
if [[ -n ${FAKE_SRUN_SLEEP:-} ]]; then
  trap 'echo USR1 >"$FAKE_LOG/srun.signal"; exit 0' USR1
  for ((i = 0; i < FAKE_SRUN_SLEEP * 10; ++i)); do sleep 0.1; done
  exit 3
fi
per_task=${SRUN_CPUS_PER_TASK:-1} bind=none
while [[ $1 != bash ]]; do
  case $1 in
    -c | --cpus-per-task) per_task=$2 && shift ;;
    -c*) per_task=${1#-c} ;;
    --cpus-per-task=*) per_task=${1#*=} ;;
    --cpu-bind=*) bind=${1#*=} ;;
  esac
  shift
done
shift
mine=()
IFS=, read -r -a ranges < <(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
for r in "${ranges[@]}"; do
  for ((c = ${r%-*}; c <= ${r#*-}; ++c)); do mine+=("$c"); done
done
n=$((per_task < ${#mine[@]} ? per_task : ${#mine[@]}))
for ((t = 0; t < ${SLURM_NTASKS_PER_NODE:-1}; ++t)); do
  set=()
  for ((j = 0; j < n; ++j)); do set+=("${mine[(t * per_task + j) % ${#mine[@]}]}"); done
  binder=()
  [[ $bind != none ]] && binder=(taskset -c "$(IFS=,; echo "${set[*]}")")
  SLURM_PROCID=$t SLURM_LOCALID=$t "${binder[@]}" bash "$@" || exit
done
EOF
cat >"$work/bin/scontrol" <<'EOF'
#!/usr/bin/env bash
case "$1 $2" in
  "show hostnames") echo nid001000; echo nid001001 ;;
  requeue*) echo "$@" >"$FAKE_LOG/requeue" ;;
esac
EOF
printf '#!/usr/bin/env bash\nexit 0\n' >"$work/bin/module"
# trident-train stand-in: records the arguments it was given, one file per local rank.
cat >"$work/fake-train" <<'EOF'
#!/usr/bin/env bash
printf '%s\n' "$@" >"$FAKE_LOG/train-$SLURM_LOCALID.args"
EOF
chmod +x "$work/bin/"* "$work/fake-train"

help=$("$train" --help 2>&1) || fail "trident-train --help failed"

# The CPUs this test may use: a rank cannot get more.
mine=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status | tr ',' '\n' |
  awk -F- '{ n += ($2 == "" ? 1 : $2 - $1 + 1) } END { print n + 0 }')

# run TEMPLATE NODES [VAR=VALUE...]: runs the template as the batch script of a job with
# NODES x 4 ranks, with SLURM_CPUS_PER_TASK from its #SBATCH --cpus-per-task line (as sbatch
# sets it); sets rc, out (stdout and stderr), err (stderr) and job_err (stderr less the ranks'
# warnings of too few CPUs, which this small machine may cause).
run() {
  local template=$1 nodes=$2
  shift 2
  rm -f "$work"/log/*
  mkdir -p "$work/log"
  cpus_per_task=$(sed -n 's/^#SBATCH --cpus-per-task=\([0-9]*\).*/\1/p' "$src/slurm/$template.sbatch")
  env -i HOME="$HOME" PATH="$work/bin:$PATH" FAKE_LOG="$work/log" \
    SLURM_JOB_ID=4242 SLURM_JOB_NAME=dry SLURM_SUBMIT_DIR="$src" SLURM_JOB_NUM_NODES="$nodes" \
    SLURM_NTASKS=$((nodes * 4)) SLURM_NTASKS_PER_NODE=4 SLURM_JOB_NODELIST="nid[001000-001001]" \
    SLURM_CPUS_PER_TASK="$cpus_per_task" TRIDENT_TRAIN="$work/fake-train" \
    TRIDENT_PLANNER="$planner" TRIDENT_RUN_ROOT="$work/runs" "$@" \
    bash "$src/slurm/$template.sbatch" >"$work/stdout" 2>"$work/stderr"
  rc=$?
  err=$(<"$work/stderr")
  job_err=$(grep -v "^trident-rank: warning: rank [0-9]* may run on" "$work/stderr")
  out=$(cat "$work/stdout" "$work/stderr")
}
# The flags of the recorded trident-train arguments (local rank 1's) that `trident-train --help`
# does not list.
unknown_flags() {
  local flag
  while read -r flag; do
    grep -qE -- "(^|[ ,])$flag( |,|=|$)" <<<"$help" || echo "$flag"
  done < <(grep -E '^--[a-z]' "$work/log/train-1.args")
}
# The value after flag $1 in the recorded trident-train arguments of local rank ${2:-1}.
arg() { grep -A1 -x -- "$1" "$work/log/train-${2:-1}.args" | tail -n 1; }

for t in perlmutter-1node:1:4:1:1 perlmutter-3d:4:2:4:2; do
  IFS=: read -r template nodes dp tp pp <<<"$t"
  run "$template" "$nodes"
  [[ $rc == 0 ]] || fail "$template exited $rc: $out"
  [[ -f $work/log/train-1.args ]] || fail "$template did not launch trident-train: $out"
  [[ $(arg --dp)/$(arg --tp)/$(arg --pp) == "$dp/$tp/$pp" ]] ||
    fail "$template launched dp/tp/pp $(arg --dp)/$(arg --tp)/$(arg --pp), want $dp/$tp/$pp"
  [[ $(arg --device) == cuda:2 ]] || fail "$template: local rank 1 got '$(arg --device)', want cuda:2 (map 3,2,1,0)"
  grep -qx -- --resume "$work/log/train-1.args" || fail "$template does not pass --resume"
  [[ $(arg --checkpoint-dir) == "$work/runs/checkpoints-"* ]] || fail "$template: --checkpoint-dir $(arg --checkpoint-dir)"
  grep -qx -- "--gpu-bind=none" "$work/log/srun.args" || fail "$template: srun without --gpu-bind=none"
  grep -qx -- "--cpu-bind=cores" "$work/log/srun.args" || fail "$template: srun without --cpu-bind=cores"
  grep -q "^--output=$work/runs/dry-4242/run-0/rank-%t.log$" "$work/log/srun.args" ||
    fail "$template: rank logs not in the per-job directory: $(grep output "$work/log/srun.args")"
  bad=$(unknown_flags)
  [[ -z $bad ]] || fail "$template passes $bad, which trident-train --help does not list"
  ok "$template: dp $dp x tp $tp x pp $pp on $nodes node(s), rank 1 on cuda:2, every flag known to trident-train"

  # Every local rank: its GPU from the map, its CPU set (more than one CPU: the job asks for
  # 32 per task), OMP_NUM_THREADS = CPUs per task - 1.
  ((cpus_per_task > 1)) || fail "$template: --cpus-per-task $cpus_per_task, expected more than 1"
  want=$((cpus_per_task < mine ? cpus_per_task : mine))
  map=(3 2 1 0)
  for r in 0 1 2 3; do
    [[ $(arg --device "$r") == "cuda:${map[r]}" ]] || fail "$template: local rank $r got '$(arg --device "$r")', want cuda:${map[r]}"
    line=$(grep -E "^trident-rank: rank $r of " <<<"$out") || fail "$template: rank $r printed no trident-rank line: $out"
    echo "    $line"
    [[ $line =~ cpus\ ([0-9,-]+)\ \(([0-9]+)\),\ OMP_NUM_THREADS\ ([0-9]+) ]] ||
      fail "$template: rank $r's line has no CPU set: $line"
    n=${BASH_REMATCH[2]}
    if ((mine > 1)); then
      ((n > 1)) || fail "$template: rank $r runs on $n CPU (${BASH_REMATCH[1]}) although the job asked" \
        "for $cpus_per_task per task: srun was not given --cpus-per-task"
    fi
    ((n == want)) || fail "$template: rank $r has $n CPUs (${BASH_REMATCH[1]}), want $want"
    ((BASH_REMATCH[3] == cpus_per_task - 1)) ||
      fail "$template: rank $r has OMP_NUM_THREADS ${BASH_REMATCH[3]}, want $((cpus_per_task - 1))"
  done
  # A rank warns when it has fewer CPUs than OpenMP threads: here only when this machine has
  # fewer CPUs than the job asks for.
  warned=$(grep -c "^trident-rank: warning: rank [0-3] may run on $want CPU(s)" <<<"$err")
  if ((want < cpus_per_task - 1)); then
    ((warned == 4)) || fail "$template: $warned ranks warn of $want CPUs for $((cpus_per_task - 1)) threads, want 4: $err"
  else
    ((warned == 0)) || fail "$template: a rank warns: $err"
  fi
  if ((mine > 1)); then
    ok "$template: every rank of the node on $want CPUs ($cpus_per_task per task asked, $mine here), $((cpus_per_task - 1)) OpenMP threads"
  else
    ok "$template: every rank on the 1 CPU this test may use (the more-than-one check needs 2)"
  fi

  # A checkpoint that fits in the 90 s lead: one line on stdout, no warning.
  grep -qE "^trident-job: checkpoint save: .* within the 90 s USR1 lead" "$work/stdout" ||
    fail "$template: no checkpoint save prediction: $out"
  [[ -z $job_err ]] || fail "$template: unexpected stderr: $job_err"
  ok "$template: $(grep '^trident-job: checkpoint save' "$work/stdout")"

  run "$template" "$nodes" TRIDENT_DP=3
  [[ $rc == 2 ]] || fail "$template with DP=3 exited $rc, want 2"
  grep -q "DP x TP x PP = 3 x $tp x $pp = $((3 * tp * pp))" <<<"$out" || fail "$template: no clear message: $out"
  [[ ! -e $work/log/srun.args ]] || fail "$template with a bad layout still ran srun"
  ok "$template: a wrong layout stops before srun with exit 2"
done

# The predicted save time against the lead time. gpt2 (perlmutter-1node): 124.4M parameters,
# 1.5 GB, about 1.5 s at 1 GB/s.
expect_warning() {  # expect_warning WHAT LEAD: exactly one warning line, naming the lead
  [[ $rc == 0 ]] || fail "$1: exited $rc: $out"
  [[ $(grep -c . <<<"$job_err") == 1 ]] || fail "$1: want one line on stderr, got: $job_err"
  grep -q "^trident-job: warning: the checkpoint save (.*) may outlast the $2 s between USR1" <<<"$job_err" ||
    fail "$1: no warning naming the $2 s lead: $job_err"
  [[ -f $work/log/train-1.args ]] || fail "$1: the warning stopped the job"
  ok "$1: $job_err"
}
run perlmutter-1node 1 TRIDENT_CKPT_WRITE_GBPS=0.01
expect_warning "slow file system (0.01 GB/s)" 90
run perlmutter-1node 1 SBATCH_SIGNAL=B:USR1@1
expect_warning "SBATCH_SIGNAL=B:USR1@1" 1
run perlmutter-1node 1 SBATCH_SIGNAL=B:USR1@1 TRIDENT_SIGNAL_LEAD=3
if ! grep -q "within the 3 s USR1 lead" "$work/stdout" || [[ -n $job_err ]]; then
  fail "TRIDENT_SIGNAL_LEAD=3 does not take precedence over SBATCH_SIGNAL: $out"
fi
ok "TRIDENT_SIGNAL_LEAD=3 takes precedence over SBATCH_SIGNAL=B:USR1@1"
run perlmutter-1node 1 TRIDENT_SIGNAL_LEAD=1
expect_warning "TRIDENT_SIGNAL_LEAD=1" 1
run perlmutter-1node 1 TRIDENT_PLANNER=/nonexistent/trident-planner
[[ $rc == 0 && -f $work/log/train-1.args ]] || fail "without a planner the job did not run: $out"
grep -q "^trident-job: checkpoint save time not checked against the 90 s USR1 lead: no trident-planner" <<<"$out" ||
  fail "without a planner: no message: $out"
ok "without trident-planner the job runs and says the save time is not checked"

# The flag check itself catches a flag trident-train does not have.
run perlmutter-1node 1 TRIDENT_ARGS="--no-such-flag 1"
[[ $(unknown_flags) == --no-such-flag ]] || fail "the flag check missed --no-such-flag"
ok "the flag check catches a flag trident-train does not know"

# USR1 to the batch shell (what --signal=B:USR1@90 does): forwarded to srun, then the job
# requeues itself.
rm -f "$work"/log/*
env -i HOME="$HOME" PATH="$work/bin:$PATH" FAKE_LOG="$work/log" FAKE_SRUN_SLEEP=20 \
  SLURM_JOB_ID=4242 SLURM_JOB_NAME=dry SLURM_SUBMIT_DIR="$src" SLURM_JOB_NUM_NODES=1 \
  SLURM_NTASKS=4 SLURM_NTASKS_PER_NODE=4 SLURM_JOB_NODELIST=nid001000 \
  TRIDENT_TRAIN="$work/fake-train" TRIDENT_RUN_ROOT="$work/runs" \
  bash "$src/slurm/perlmutter-1node.sbatch" >"$work/preempt.out" 2>&1 &
job=$!
for ((i = 0; i < 100; ++i)); do
  [[ -f $work/log/srun.args ]] && break
  sleep 0.1
done
sleep 0.3
kill -USR1 "$job"
wait "$job"
rc=$?
out=$(cat "$work/preempt.out")
[[ $rc == 0 ]] || fail "preempted perlmutter-1node exited $rc: $out"
[[ -f $work/log/srun.signal ]] || fail "USR1 did not reach srun: $out"
[[ $(cat "$work/log/requeue" 2>/dev/null) == "requeue 4242" ]] || fail "the job did not requeue itself: $out"
ok "perlmutter-1node: USR1 forwarded to srun, job requeued"
