#!/usr/bin/env bash
# Hugging Face round trip through the programs: trident-train starts from the HF fixture
# (tests/fixtures/hf_gpt2_tiny, written as save_pretrained writes GPT2LMHeadModel), trains 0
# steps, and trident-export_hf turns its weights back into exactly the fixture's config.json and
# model.safetensors bytes, also from a model built with a padded vocabulary. Then 3 training
# steps: the exported directory, read back with --hf, evaluates to the same loss as the trained
# weights themselves (--load).
# Usage: hf_export_check.sh TRIDENT_TRAIN TRIDENT_EXPORT_HF FIXTURES WORKDIR
set -euo pipefail
train=$1 export_hf=$2 fix=$3 dir=$4
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "FAIL: $*" >&2; exit 1; }
run() {  # run LOG CMD...: the command's output goes to LOG, shown when it fails
  local log=$1
  shift
  "$@" >"$log" 2>&1 || { cat "$log"; fail "$* failed"; }
}

data=(--data "$fix/tiny_tokens.bin" --val-data "$fix/tiny_tokens.bin" --seq 12 --batch 2
      --eval-batches 2 --threads 1)
same_bytes() {  # same_bytes EXPORT_DIR WHAT
  for f in config.json model.safetensors; do
    cmp "$1/$f" "$fix/hf_gpt2_tiny/$f" || fail "$2: $f differs from the fixture's"
  done
  echo "ok: $2: config.json and model.safetensors identical to the fixture's"
}

run "$dir/zero.log" "$train" --hf "$fix/hf_gpt2_tiny" "${data[@]}" --steps 0 --out-dir "$dir/zero"
run "$dir/export_zero.log" "$export_hf" "$dir/zero/model.safetensors" "$dir/hf_zero"
same_bytes "$dir/hf_zero" "--hf fixture, 0 steps, exported"

run "$dir/padded.log" "$train" --hf "$fix/hf_gpt2_tiny" --padded-vocab 72 "${data[@]}" --steps 0 \
  --out-dir "$dir/padded"
run "$dir/export_padded.log" "$export_hf" "$dir/padded/model.safetensors" "$dir/hf_padded"
same_bytes "$dir/hf_padded" "the same in a model padded to 72 rows"

run "$dir/trained.log" "$train" --hf "$fix/hf_gpt2_tiny" "${data[@]}" --steps 3 --lr 1e-2 \
  --out-dir "$dir/trained"
run "$dir/export_trained.log" "$export_hf" "$dir/trained/model.safetensors" "$dir/hf_trained"
cmp -s "$dir/hf_trained/model.safetensors" "$fix/hf_gpt2_tiny/model.safetensors" &&
  fail "3 training steps left the exported weights unchanged"
eval_loss() {
  "$train" --mode eval "$@" --data "$fix/tiny_tokens.bin" --seq 12 --eval-windows 8 --threads 1 \
    2>&1 | tee -a "$dir/eval.log" | grep -oE 'mean cross-entropy [0-9.]+' | awk '{print $3}'
}
from_load=$(eval_loss --load "$dir/trained/model.safetensors")
from_hf=$(eval_loss --hf "$dir/hf_trained")
[[ -n $from_load && $from_load == "$from_hf" ]] ||
  { cat "$dir/eval.log"; fail "eval of the trained weights: --load $from_load, exported --hf $from_hf"; }
echo "ok: after 3 steps the export evaluates as the trained weights: $from_hf (--load $from_load)"
