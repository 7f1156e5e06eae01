#!/usr/bin/env bash
# GPT-2's vocabulary on a GPU is padded by default: trident-train --device cuda with a vocabulary
# of 50257 builds a 50304-row embedding / LM head (metrics.jsonl: padded_vocab 50304) and logs
# the same losses as with --padded-vocab 0 (50257 rows), relative 1e-5. Skipped (77) where the
# probe finds no GPU; the CUDA emulation counts as one. One step and a 200-token validation file
# (3 batches): under the emulation a step of this head takes about a minute.
# Usage: padded_vocab_cuda_check.sh PROBE TRIDENT_TRAIN TOKENS WORKDIR
set -uo pipefail
probe=$1 train=$2 tokens=$3 dir=$4
"$probe" --probe-gpu
rc=$?
((rc == 77)) && exit 77
((rc == 0)) || { echo "the GPU probe $probe failed (exit $rc)"; exit 1; }
set -e
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "FAIL: $*" >&2; exit 1; }
common=(--device cuda --vocab 50257 --steps 1 --log-interval 1 --layers 1 --width 32 --heads 2
        --batch 4 --seq 16 --threads 1 --data "$tokens" --val-data "$tokens")
"$train" "${common[@]}" --out-dir "$dir/auto" >"$dir/auto.log" 2>&1 ||
  { cat "$dir/auto.log"; fail "padded (default) run failed"; }
"$train" "${common[@]}" --padded-vocab 0 --out-dir "$dir/plain" >"$dir/plain.log" 2>&1 ||
  { cat "$dir/plain.log"; fail "unpadded run failed"; }
grep -qF '"padded_vocab_size":50304' "$dir/auto/metrics.jsonl" ||
  fail "default on cuda is not 50304 rows: $(head -n 1 "$dir/auto/metrics.jsonl")"
grep -qF '"padded_vocab_size":50257' "$dir/plain/metrics.jsonl" ||
  fail "--padded-vocab 0 is not 50257 rows: $(head -n 1 "$dir/plain/metrics.jsonl")"
losses() { grep -oE '"(loss|final_val_loss)": [0-9.e+-]+' "$1" | awk '{print $2}'; }
paste <(losses "$dir/plain/metrics.jsonl") <(losses "$dir/auto/metrics.jsonl") >"$dir/pairs"
n=$(wc -l <"$dir/pairs")
((n == 2)) || fail "expected a step loss and a validation loss, got $n lines: $(cat "$dir/pairs")"
awk '{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-5 * $1) { print "line " NR ": " $0; bad = 1 } }
     END { exit bad }' "$dir/pairs" || fail "padded and unpadded losses differ on cuda"
echo "ok: cuda default 50304 rows; the step loss and the validation loss match 50257 rows ($(tail -n 1 "$dir/pairs"))"
