#!/usr/bin/env bash
# ctest slurm.templates_dry_run: the Perlmutter templates run as a Slurm job would run them,
# with srun, scontrol and module replaced by stand-ins that record what they are asked (no
# Slurm, no GPU needed):
#   * a matching layout launches every rank's trident-train with the template's dp/tp/pp, the
#     checkpoint flags and `--device cuda:G`, G from the GPU map for the local rank;
#   * every flag given to trident-train is one that `trident-train --help` lists;
#   * a world size that is not dp x tp x pp stops the job with exit 2 and a message, before srun;
#   * USR1 to the batch shell reaches srun and the job requeues itself.
#
#   bash tests/slurm/templates_dry_run.sh TRIDENT_TRAIN SOURCE_DIR
set -uo pipefail
train=$(realpath "${1:?usage: templates_dry_run.sh TRIDENT_TRAIN SOURCE_DIR}")
src=$(realpath "${2:?usage: templates_dry_run.sh TRIDENT_TRAIN SOURCE_DIR}")
work=$(mktemp -d /tmp/trident-slurm-dry.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}
ok() { echo "ok: $*"; }

mkdir -p "$work/bin"
# srun stand-in: records its arguments, then runs the rank wrapper once as local rank 1 of the
# first node (the part after the srun options), like one task of the step. With
# FAKE_SRUN_SLEEP it first waits (to be signalled), exiting 0 on USR1 as trident-train does.
cat >"$work/bin/srun" <<'EOF'
#!/usr/bin/env bash
printf '%s\n' "$@" >"$FAKE_LOG/srun.args"
if [[ -n ${FAKE_SRUN_SLEEP:-} ]]; then
  trap 'echo USR1 >"$FAKE_LOG/srun.signal"; exit 0' USR1
  for ((i = 0; i < FAKE_SRUN_SLEEP * 10; ++i)); do sleep 0.1; done
  exit 3
fi
while [[ $1 != bash ]]; do shift; done
shift
SLURM_PROCID=1 SLURM_LOCALID=1 bash "$@"
EOF
cat >"$work/bin/scontrol" <<'EOF'
#!/usr/bin/env bash
case "$1 $2" in
  "show hostnames") echo nid001000; echo nid001001 ;;
  requeue*) echo "$@" >"$FAKE_LOG/requeue" ;;
esac
EOF
printf '#!/usr/bin/env bash\nexit 0\n' >"$work/bin/module"
# trident-train stand-in: records the arguments it was given.
cat >"$work/fake-train" <<'EOF'
#!/usr/bin/env bash
printf '%s\n' "$@" >"$FAKE_LOG/train.args"
EOF
chmod +x "$work/bin/"* "$work/fake-train"

help=$("$train" --help 2>&1) || fail "trident-train --help failed"

# run TEMPLATE NODES [VAR=VALUE...]: runs the template as the batch script of a job with
# NODES x 4 ranks; sets rc and out.
run() {
  local template=$1 nodes=$2
  shift 2
  rm -f "$work"/log/*
  mkdir -p "$work/log"
  out=$(env -i HOME="$HOME" PATH="$work/bin:$PATH" FAKE_LOG="$work/log" \
    SLURM_JOB_ID=4242 SLURM_JOB_NAME=dry SLURM_SUBMIT_DIR="$src" SLURM_JOB_NUM_NODES="$nodes" \
    SLURM_NTASKS=$((nodes * 4)) SLURM_NTASKS_PER_NODE=4 SLURM_JOB_NODELIST="nid[001000-001001]" \
    TRIDENT_TRAIN="$work/fake-train" TRIDENT_RUN_ROOT="$work/runs" "$@" \
    bash "$src/slurm/$template.sbatch" 2>&1)
  rc=$?
}
# The flags of the recorded trident-train arguments that `trident-train --help` does not list.
unknown_flags() {
  local flag
  while read -r flag; do
    grep -qE -- "(^|[ ,])$flag( |,|=|$)" <<<"$help" || echo "$flag"
  done < <(grep -E '^--[a-z]' "$work/log/train.args")
}
# The value after flag $1 in the recorded trident-train arguments.
arg() { grep -A1 -x -- "$1" "$work/log/train.args" | tail -n 1; }

for t in perlmutter-1node:1:4:1:1 perlmutter-3d:4:2:4:2; do
  IFS=: read -r template nodes dp tp pp <<<"$t"
  run "$template" "$nodes"
  [[ $rc == 0 ]] || fail "$template exited $rc: $out"
  [[ -f $work/log/train.args ]] || fail "$template did not launch trident-train: $out"
  [[ $(arg --dp)/$(arg --tp)/$(arg --pp) == "$dp/$tp/$pp" ]] ||
    fail "$template launched dp/tp/pp $(arg --dp)/$(arg --tp)/$(arg --pp), want $dp/$tp/$pp"
  [[ $(arg --device) == cuda:2 ]] || fail "$template: local rank 1 got '$(arg --device)', want cuda:2 (map 3,2,1,0)"
  grep -qx -- --resume "$work/log/train.args" || fail "$template does not pass --resume"
  [[ $(arg --checkpoint-dir) == "$work/runs/checkpoints-"* ]] || fail "$template: --checkpoint-dir $(arg --checkpoint-dir)"
  grep -qx -- "--gpu-bind=none" "$work/log/srun.args" || fail "$template: srun without --gpu-bind=none"
  grep -qx -- "--cpu-bind=cores" "$work/log/srun.args" || fail "$template: srun without --cpu-bind=cores"
  grep -q "^--output=$work/runs/dry-4242/run-0/rank-%t.log$" "$work/log/srun.args" ||
    fail "$template: rank logs not in the per-job directory: $(grep output "$work/log/srun.args")"
  bad=$(unknown_flags)
  [[ -z $bad ]] || fail "$template passes $bad, which trident-train --help does not list"
  ok "$template: dp $dp x tp $tp x pp $pp on $nodes node(s), rank 1 on cuda:2, every flag known to trident-train"

  run "$template" "$nodes" TRIDENT_DP=3
  [[ $rc == 2 ]] || fail "$template with DP=3 exited $rc, want 2"
  grep -q "DP x TP x PP = 3 x $tp x $pp = $((3 * tp * pp))" <<<"$out" || fail "$template: no clear message: $out"
  [[ ! -e $work/log/srun.args ]] || fail "$template with a bad layout still ran srun"
  ok "$template: a wrong layout stops before srun with exit 2"
done

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
