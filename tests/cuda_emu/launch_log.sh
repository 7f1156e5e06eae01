#!/usr/bin/env bash
# launch_log.sh OUT [NAME=COUNT ...] -- TRAIN ARGS...: the launches of ONE training step under the
# CUDA emulation. Runs TRAIN ARGS for 2 and for 3 steps with TRIDENT_CUDA_EMU_LAUNCH_LOG (the
# emulator's count of every stream op run, per kernel or call name), prints the difference (the
# third step's launches: setup, evaluation and write-out cancel out, and so do the first steps'
# one-time work: step 1 learns the weights' working copies, step 2 uploads their table) as
# OUT/step.tsv, and checks each NAME=COUNT: that name ran exactly COUNT times in the step.
set -euo pipefail
out=$1
shift
expect=()
while [[ $# -gt 0 && $1 != -- ]]; do expect+=("$1"); shift; done
[[ $# -gt 1 ]] || { echo "usage: launch_log.sh OUT [NAME=COUNT ...] -- TRAIN ARGS..."; exit 2; }
shift
rm -rf "$out"
mkdir -p "$out"
for s in 2 3; do
  TRIDENT_CUDA_EMU_LAUNCH_LOG=$out/launches_$s.tsv "$@" --steps $s --out-dir "$out/run$s" \
    > "$out/run$s.log" 2>&1 || { cat "$out/run$s.log"; exit 1; }
done
awk -F'\t' -v OFS='\t' 'NR == FNR { one[$2] = $1; next }
  { print $1 - one[$2], $2 }' "$out/launches_2.tsv" "$out/launches_3.tsv" > "$out/step.tsv"
echo "launches of one step (name: count), total $(awk -F'\t' '{ s += $1 } END { print s }' "$out/step.tsv"):"
awk -F'\t' '$1 != 0 { printf "  %6d  %s\n", $1, $2 }' "$out/step.tsv"
fail=0
for e in "${expect[@]}"; do
  name=${e%=*} want=${e##*=}
  got=$(awk -F'\t' -v n="$name" '$2 == n { print $1 }' "$out/step.tsv")
  got=${got:-0}
  if [[ $got != "$want" ]]; then
    echo "FAIL: $name ran $got times in the step, expected $want"
    fail=1
  fi
done
[[ $fail == 0 ]] || exit 1
echo "launch_log: ${#expect[@]} counts as expected"
