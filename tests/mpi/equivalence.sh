#!/usr/bin/env bash
# equivalence.sh COMPARE OUT REF NP -- TRAIN ARGS...: runs trident-train on NP ranks (NP 1 runs
# it without mpirun) into OUT, then checks its losses and final weights against the run in REF.
set -euo pipefail
compare=$1 out=$2 ref=$3 np=$4
shift 5
rm -rf "$out"
if [[ $np == 1 ]]; then
  "$@" --out-dir "$out" > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
else
  mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none -np "$np" \
    "$@" --out-dir "$out" > "$out.log" 2>&1 || { cat "$out.log"; exit 1; }
fi
grep -E "^layout|^global batch|^done" "$out.log" || true
# EQ_RTOL (optional): the tolerance of the comparison (compare_runs' default otherwise).
[[ $ref == none ]] || "$compare" ${EQ_RTOL:+--rtol "$EQ_RTOL"} "$out" "$ref"
