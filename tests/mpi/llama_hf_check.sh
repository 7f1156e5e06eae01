#!/usr/bin/env bash
# llama_hf_check.sh WORK TRAIN EXPORT TOKENS: a Llama trained by trident-train, exported as a
# Hugging Face LlamaForCausalLM directory (trident-export_hf) and loaded back with --hf gives
# exactly the evaluation loss of the weights it came from; exporting again writes the same bytes.
set -euo pipefail
work=$1 train=$2 export=$3 tokens=$4
rm -rf "$work"
mkdir -p "$work"
common=(--model llama-tiny --seq 16 --threads 1)
"$train" "${common[@]}" --batch 4 --steps 5 --log-interval 5 --eval-batches 1 \
  --out-dir "$work/run" > "$work/train.log" 2>&1 || { cat "$work/train.log"; exit 1; }
"$export" "$work/run/model.safetensors" "$work/hf"
"$export" "$work/run/model.safetensors" "$work/hf2" > /dev/null
cmp "$work/hf/model.safetensors" "$work/hf2/model.safetensors"
cmp "$work/hf/config.json" "$work/hf2/config.json"
grep -q '"model_type": "llama"' "$work/hf/config.json"
grep -q '"num_key_value_heads": 2' "$work/hf/config.json"
eval_loss() {
  "$train" "${common[@]}" --mode eval --data "$tokens" --eval-windows 4 "$@" |
    sed -n 's/.*mean cross-entropy \([0-9.]*\).*/\1/p'
}
a=$(eval_loss --load "$work/run/model.safetensors")
b=$(eval_loss --hf "$work/hf")
echo "eval loss: trident weights $a, Hugging Face export $b"
[[ -n $a && $a == "$b" ]] || { echo "FAIL: the exported model's loss differs"; exit 1; }
