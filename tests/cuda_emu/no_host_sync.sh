#!/usr/bin/env bash
# no_host_sync.sh METRICS STEPS [FIRST]: checks a trident-train metrics.jsonl written under the
# CUDA emulation: each of the STEPS step lines must count zero host synchronisations
# ("host_syncs", from the emulator's counter: cudaStreamSynchronize, a copy to the host,
# cudaFree, ...) and, from step FIRST on (default 2: after the first step, which fills the
# caching allocator), zero cudaMalloc calls.
set -euo pipefail
metrics=$1 steps=$2 first=${3:-2}
lines=$(grep -c '"step": [0-9]*, "loss"' "$metrics" || true)
[[ $lines == "$steps" ]] || { echo "FAIL: $lines step lines in $metrics, expected $steps"; exit 1; }
bad=$(grep '"step": [0-9]*, "loss"' "$metrics" | grep -v '"host_syncs": 0,' || true)
[[ -z $bad ]] || { echo "FAIL: host synchronisations inside a step:"; echo "$bad"; exit 1; }
bad=$(grep '"step": [0-9]*, "loss"' "$metrics" | grep -v '"device_mallocs": 0[,}]' |
      awk -v first="$first" '{ s = $0; sub(/.*"step": /, "", s); sub(/,.*/, "", s) }
                             s + 0 >= first' || true)
[[ -z $bad ]] || { echo "FAIL: cudaMalloc inside a step from step $first on:"; echo "$bad"; exit 1; }
echo "no_host_sync: $steps steps, 0 host synchronisations and no cudaMalloc from step $first on"
