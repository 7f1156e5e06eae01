#!/usr/bin/env bash
# CPU training throughput, Trident vs PyTorch: the same GPT, batch, step and thread count.
#
#   bench/cpu_train.sh                 # all configs, threads 1 and 2, 3 rounds
#   ROUNDS=5 THREADS="1 2 4" ONLY=10M BUILD_DIR=build-bench JOBS=2 bench/cpu_train.sh
#
# Installs Debian's torch and a threaded OpenBLAS if missing (torch's BLAS is libblas.so.3,
# which is the slow reference BLAS without OpenBLAS), builds trident-bench-cpu-train, then for
# every (config, threads) runs the two implementations alternately, ROUNDS times each, so that
# machine noise (other jobs, frequency changes) hits both. Reports the median tokens/s of each
# and the ratio trident/torch. Writes bench/results/cpu_train-<UTC date>.json with the machine,
# the load average, the exact commands and every raw JSON line; prints a short table.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build-bench}"
JOBS="${JOBS:-2}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-1 2}"
ONLY="${ONLY:-}"                      # run only the config of this name
RESULTS_DIR="${RESULTS_DIR:-bench/results}"
TORCH_PY=/usr/bin/python3  # Debian's torch; the python3 on PATH may have none
cd "$ROOT"

# --- dependencies (idempotent) ---------------------------------------------------------------
missing=()
for pkg in python3-torch libopenblas0-pthread; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# --- build -----------------------------------------------------------------------------------
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRIDENT_ENABLE_CUDA=OFF
fi
cmake --build "$BUILD_DIR" --target trident-bench-cpu-train -j "$JOBS"
TRIDENT_BIN="$BUILD_DIR/bench/trident-bench-cpu-train"

# --- configs: name|model and batch arguments|timed steps|warmup steps -------------------------
CONFIGS=(
  "tiny|--vocab 256 --block 64 --layers 4 --heads 4 --width 128 --batch 16 --seq 64|20|3"
  "10M|--vocab 4096 --block 256 --layers 5 --heads 6 --width 384 --batch 8 --seq 128|6|2"
)

RAW="$(mktemp)"
trap 'rm -f "$RAW"' EXIT
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

for entry in "${CONFIGS[@]}"; do
  IFS='|' read -r name model_args steps warmup <<<"$entry"
  [[ -n $ONLY && $name != "$ONLY" ]] && continue
  for t in $THREADS; do
    common="$model_args --steps $steps --warmup-steps $warmup --threads $t --clip 1.0 --lr 3e-4 --seed 1337"
    trident_cmd="$TRIDENT_BIN $common"
    torch_cmd="$TORCH_PY bench/cpu_train_torch.py $common"
    for ((r = 0; r < ROUNDS; ++r)); do
      # Alternate which goes first so neither always runs right after the other's warm caches.
      if ((r % 2 == 0)); then order=(trident torch); else order=(torch trident); fi
      for impl in "${order[@]}"; do
        cmd="$trident_cmd"
        [[ $impl == torch ]] && cmd="$torch_cmd"
        load="$(cut -d' ' -f1 /proc/loadavg)"
        # Both libraries' thread pools are pinned to t (torch also reads OpenBLAS's variable).
        line="$(OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t $cmd | tail -n 1)"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$t" "$r" "$impl" "$load" "$line" >>"$RAW"
        printf '%-5s threads %s round %s %-8s %s tok/s (load %s)\n' "$name" "$t" "$r" "$impl" \
          "$(sed -E 's/.*"tokens_per_s": ?([0-9.]+).*/\1/' <<<"$line" | cut -d. -f1)" "$load"
      done
    done
    printf '%s\t%s\tcommands\t%s\t%s\n' "$name" "$t" "OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t $trident_cmd" \
      "OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t $torch_cmd" >>"$RAW"
  done
done

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/cpu_train-$(date -u +%Y-%m-%d).json"
[[ -e $OUT ]] && OUT="$RESULTS_DIR/cpu_train-$(date -u +%Y-%m-%dT%H%M%S).json"

RAW="$RAW" OUT="$OUT" START="$START" LOAD_BEFORE="$LOAD_BEFORE" LOAD_AFTER="$LOAD_AFTER" \
  ROUNDS="$ROUNDS" "$TORCH_PY" - <<'EOF'
import json, os, statistics, subprocess

def lscpu(field):
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return "unknown"

runs, commands = {}, {}
with open(os.environ["RAW"]) as f:
    for row in f.read().splitlines():
        name, threads, rnd, *rest = row.split("\t")
        key = (name, int(threads))
        if rnd == "commands":
            commands[key] = {"trident": rest[0], "pytorch": rest[1]}
            continue
        impl, load, line = rest
        r = json.loads(line)
        r["round"], r["load_1min_before"] = int(rnd), float(load)
        runs.setdefault(key, []).append(r)

loads = [float(x) for x in (os.environ["LOAD_BEFORE"] + " " + os.environ["LOAD_AFTER"]).split()]
results = []
for key, rs in runs.items():
    by = {impl: [r for r in rs if r["impl"] == impl] for impl in ("trident", "pytorch")}
    med = {impl: statistics.median(r["tokens_per_s"] for r in v) for impl, v in by.items()}
    results.append({
        "config": key[0], "threads": key[1], "params": by["pytorch"][0]["params"],
        "params_trident": by["trident"][0]["params"],
        "model": by["pytorch"][0]["config"],
        "tokens_per_s_median": med,
        "ratio_trident_over_pytorch": med["trident"] / med["pytorch"],
        "tokens_per_s_rounds": {impl: [r["tokens_per_s"] for r in v] for impl, v in by.items()},
        "commands": commands[key],
        "raw": rs,
    })
doc = {
    "benchmark": "CPU training throughput (bench/cpu_train.sh): zero_grad + forward + loss + "
                 "backward + clip_grad_norm(1.0) + AdamW step, random tokens, fp32",
    "date": os.environ["START"],
    "machine": {"cpu": lscpu("Model name"), "cores": os.cpu_count(),
                "threads_per_core": lscpu("Thread(s) per core"),
                "host": os.uname().nodename},
    "trident_commit": subprocess.run(["git", "describe", "--always", "--dirty"],
                                     capture_output=True, text=True).stdout.strip(),
    "torch": next((r["torch"] for rs in runs.values() for r in rs if "torch" in r), "?"),
    "load_average_before": os.environ["LOAD_BEFORE"], "load_average_after": os.environ["LOAD_AFTER"],
    "note": ("machine busy (load average above 3): other jobs shared the cores, the runs were "
             "interleaved so both implementations saw it; absolute numbers are low, the ratio is "
             "the figure to read") if max(loads) > 3 else "machine quiet (load average <= 3)",
    "rounds": int(os.environ["ROUNDS"]),
    "summary": "median tokens/s over the rounds; ratio = trident / pytorch (>= 1: Trident faster)",
    "results": results,
}
with open(os.environ["OUT"], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")

print(f"\n{'config':6s} {'params':>10s} {'threads':>7s} {'trident tok/s':>14s} "
      f"{'torch tok/s':>12s} {'ratio':>6s}")
for r in results:
    m = r["tokens_per_s_median"]
    print(f"{r['config']:6s} {r['params']:>10,d} {r['threads']:>7d} {m['trident']:>14.0f} "
          f"{m['pytorch']:>12.0f} {r['ratio_trident_over_pytorch']:>6.2f}")
print(f"load average before {os.environ['LOAD_BEFORE']}, after {os.environ['LOAD_AFTER']}")
print(f"wrote {os.environ['OUT']}")
EOF
