#!/usr/bin/env bash
# no_host_sync.sh METRICS STEPS: checks a trident-train metrics.jsonl written under the CUDA
# emulation: each of the STEPS step lines must count zero host synchronisations ("host_syncs",
# from the emulator's counter: cudaStreamSynchronize, a copy to the host, cudaFree, ...) and,
# after the first step (which fills the caching allocator), zero cudaMalloc calls.
set -euo pipefail
metrics=$1 steps=$2
lines=$(grep -c '"step": [0-9]*, "loss"' "$metrics" || true)
[[ $lines == "$steps" ]] || { echo "FAIL: $lines step lines in $metrics, expected $steps"; exit 1; }
bad=$(grep '"step": [0-9]*, "loss"' "$metrics" | grep -v '"host_syncs": 0,' || true)
[[ -z $bad ]] || { echo "FAIL: host synchronisations inside a step:"; echo "$bad"; exit 1; }
bad=$(grep '"step": [0-9]*, "loss"' "$metrics" | grep -v '"step": 1,' |
      grep -v '"device_mallocs": 0[,}]' || true)
[[ -z $bad ]] || { echo "FAIL: cudaMalloc inside a step after the first:"; echo "$bad"; exit 1; }
echo "no_host_sync: $steps steps, 0 host synchronisations and no cudaMalloc after step 1"
