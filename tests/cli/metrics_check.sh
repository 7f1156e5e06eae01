#!/usr/bin/env bash
# trident-train's metrics: `--version` prints the project version; metrics.jsonl starts with the
# resolved configuration (version, model, layout, data, optimizer); every step line carries a
# finite grad_norm, and every log line a gnorm.
# Usage: metrics_check.sh TRIDENT_TRAIN WORKDIR
set -euo pipefail
train=$1
dir=$2
rm -rf "$dir" && mkdir -p "$dir"
fail() { echo "FAIL: $*" >&2; exit 1; }

version=$("$train" --version)
[[ $version =~ ^trident-train\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "--version printed '$version'"
echo "ok: $version"

"$train" --steps 3 --log-interval 1 --layers 1 --width 32 --heads 2 --batch 4 --threads 1 \
  --grad-clip 0 --out-dir "$dir/run" >"$dir/log" 2>&1 || { cat "$dir/log"; fail "trident-train failed"; }
m=$dir/run/metrics.jsonl
head -n 1 "$m" | grep -q '^{"config":{' || fail "first line of metrics.jsonl is not the configuration: $(head -n 1 "$m")"
for key in '"version":"' '"layout":{' '"dp":1' '"n_layer":1' '"grad_clip":0' '"seed":1337' '"start_step":0'; do
  head -n 1 "$m" | grep -qF "$key" || fail "configuration line lacks $key: $(head -n 1 "$m")"
done
steps=$(grep -c '^{"step": [0-9]*, "loss"' "$m" || true)
[[ $steps == 3 ]] || fail "expected 3 step lines in metrics.jsonl, found $steps"
# Without clipping the norm is still computed on log lines (here every step).
bad=$(grep '^{"step": [0-9]*, "loss"' "$m" | grep -cvE '"grad_norm": [0-9]+\.?[0-9]*(e[-+]?[0-9]+)?,' || true)
[[ $bad == 0 ]] || fail "$bad step lines without a finite grad_norm: $(grep '"step"' "$m" | head -n 2)"
lines=$(grep -cE '^step +[0-9]+/3 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| gnorm [0-9]+\.[0-9]{3} \|' "$dir/log" || true)
[[ $lines == 3 ]] || { cat "$dir/log"; fail "expected 3 log lines with gnorm, found $lines"; }
echo "ok: metrics.jsonl starts with the configuration; 3 step lines with grad_norm; log lines show gnorm"
