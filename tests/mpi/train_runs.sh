# shellcheck shell=bash
# Sourced by the trident-train job tests (checkpoint.sh, llama_reshard.sh): the mpirun command
# line, fail and run. The caller sets work (the output folder), train (trident-train) and the
# array model (the arguments every run shares) before calling run.
mpirun_cmd=(mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none)

fail() { echo "FAIL: $*"; exit 1; }

# run NAME NP ARGS...: trident-train on NP ranks into $work/NAME; its log is $work/NAME.log.
run() {
  local name=$1 np=$2
  shift 2
  local launcher=()
  [[ $np -gt 1 ]] && launcher=("${mpirun_cmd[@]}" -np "$np")
  # shellcheck disable=SC2154  # work, train and model are the caller's
  if ! timeout -k 10 600 "${launcher[@]}" "$train" "${model[@]}" --out-dir "$work/$name" "$@" \
      >"$work/$name.log" 2>&1; then
    cat "$work/$name.log"
    fail "run $name exited non-zero"
  fi
  grep -E "^layout|^resumed|^done|^preempted" "$work/$name.log" || true
}
