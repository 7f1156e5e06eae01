#!/usr/bin/env bash
# A padded vocabulary changes nothing but the table's shape: trident-train with --padded-vocab
# (the embedding / LM head with extra rows, masked out of the loss) must log the same losses
# as the unpadded run, step by step (relative 1e-5), and the same validation loss. Its saved
# weights keep their padding (metadata padded_vocab_size) and evaluate as the unpadded model,
# which also loads into a padded model (zero padding rows) with the same result. With --tp 2
# (under MPIRUN), where the vocabulary-parallel loss masks the padding of the second slice, the
# losses match the one-rank unpadded run to 1e-5 too.
# Usage: padded_vocab_check.sh TRIDENT_TRAIN TRIDENT_TOKENIZE TEXT WORKDIR [MPIRUN...]
set -euo pipefail
train=$1 tokenize=$2 text=$3 dir=$4
shift 4
mpirun=("$@")
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "FAIL: $*" >&2; exit 1; }

common=(--steps 12 --log-interval 4 --layers 1 --width 32 --heads 2 --batch 4 --threads 1)
"$train" "${common[@]}" --out-dir "$dir/plain" >"$dir/plain.log" 2>&1 ||
  { cat "$dir/plain.log"; fail "unpadded run failed"; }
"$train" "${common[@]}" --padded-vocab 384 --out-dir "$dir/padded" >"$dir/padded.log" 2>&1 ||
  { cat "$dir/padded.log"; fail "padded run failed"; }
grep -qF '"vocab_size":256' "$dir/padded/metrics.jsonl" && grep -qF '"padded_vocab_size":384' "$dir/padded/metrics.jsonl" ||
  fail "padded run's configuration: $(head -n 1 "$dir/padded/metrics.jsonl")"
grep -qF '"padded_vocab_size":256' "$dir/plain/metrics.jsonl" ||
  fail "unpadded run's configuration (CPU default: no padding): $(head -n 1 "$dir/plain/metrics.jsonl")"
grep -q 'vocab=256 padded to 384' "$dir/padded.log" || fail "padded run does not say so: $(head -n 1 "$dir/padded.log")"

# Step losses and the final validation loss, side by side.
losses() { grep -oE '"(loss|final_val_loss)": [0-9.e+-]+' "$1" | awk '{print $2}'; }
paste <(losses "$dir/plain/metrics.jsonl") <(losses "$dir/padded/metrics.jsonl") >"$dir/pairs"
n=$(wc -l <"$dir/pairs")
((n == 13)) || fail "expected 12 step losses and a validation loss, got $n lines: $(cat "$dir/pairs")"
awk '{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-5 * $1) { print "line " NR ": " $0; bad = 1 } }
     END { exit bad }' "$dir/pairs" || fail "padded and unpadded losses differ"
echo "ok: 12 step losses and the validation loss agree ($(tail -n 1 "$dir/pairs"))"

if ((${#mpirun[@]} > 0)); then
  "${mpirun[@]}" -np 2 "$train" "${common[@]}" --tp 2 --padded-vocab 384 --out-dir "$dir/tp2" \
    >"$dir/tp2.log" 2>&1 || { cat "$dir/tp2.log"; fail "--tp 2 padded run failed"; }
  paste <(losses "$dir/plain/metrics.jsonl") <(losses "$dir/tp2/metrics.jsonl") >"$dir/pairs_tp2"
  n=$(wc -l <"$dir/pairs_tp2")
  ((n == 13)) || fail "--tp 2: expected 13 losses, got $n: $(cat "$dir/pairs_tp2")"
  awk '{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-5 * $1) { print "line " NR ": " $0; bad = 1 } }
       END { exit bad }' "$dir/pairs_tp2" || fail "--tp 2 padded and one-rank unpadded losses differ"
  echo "ok: --tp 2 with 384 rows: 12 step losses and the validation loss agree ($(tail -n 1 "$dir/pairs_tp2"))"
fi

# Evaluation: the padded weights, and the unpadded weights loaded into a padded model.
"$tokenize" "$text" -o "$dir/text.h5" >/dev/null
eval_loss() {
  "$train" --mode eval --data "$dir/text.h5" --seq 16 --eval-windows 4 --threads 1 "$@" |
    grep -oE 'mean cross-entropy [0-9.]+' | awk '{print $3}'
}
a=$(eval_loss --load "$dir/plain/model.safetensors")
b=$(eval_loss --load "$dir/padded/model.safetensors")
c=$(eval_loss --load "$dir/plain/model.safetensors" --padded-vocab 320)
[[ -n $a && -n $b && -n $c ]] || fail "evaluation printed no loss ('$a' '$b' '$c')"
awk -v a="$a" -v b="$b" -v c="$c" 'BEGIN { d = a - b; e = a - c; if (d < 0) d = -d; if (e < 0) e = -e;
  exit !(d <= 1e-5 * a && e <= 1e-5 * a) }' || fail "eval losses: unpadded $a, padded $b, unpadded into padded $c"
echo "ok: eval loss $a (unpadded), $b (padded weights), $c (unpadded weights in a padded model)"
