#!/usr/bin/env bash
# An 8-rank traced training run (dp 2 x tp 2 x pp 2, 1F1B, 2 micro-batches, 4 steps), then
# trident-report on its traces and trident-plot on its metrics, then the checks of
# test_traced_run.cpp on what they wrote.
# usage: traced_run.sh MPIEXEC TRIDENT_TRAIN TRIDENT_REPORT TRIDENT_PLOT TRACE_TESTS OUT_DIR
set -euo pipefail
mpiexec=$1 train=$2 report=$3 plot=$4 tests=$5 out=$6
rm -rf "$out"
mkdir -p "$out"
"$mpiexec" --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none -np 8 \
  "$train" --dp 2 --tp 2 --pp 2 --micro-batches 2 --batch 4 --seq 64 --steps 4 --log-interval 1 \
  --eval-interval 2 --out-dir "$out/run" --trace "$out/trace.json" | tee "$out/train.log"
"$report" "$out/trace.json" --skip 1 --png "$out/timeline.png" --json "$out/report.json" \
  --merge "$out/merged.json" | tee "$out/report.txt"
grep -q "slowest rank: rank [0-7]" "$out/report.txt"
"$plot" "$out/run" -o "$out/curves.png"
TRIDENT_TRACED_RUN_DIR="$out" "$tests" "[traced_run]"
