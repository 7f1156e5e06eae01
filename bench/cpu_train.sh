#!/usr/bin/env bash
# CPU training throughput, Trident vs PyTorch: the same GPT, batch, step and thread count.
#
#   bench/cpu_train.sh                 # both configs, threads 1 and 2, 3 rounds (~6 min idle)
#   ROUNDS=5 THREADS="1 2 4" ONLY=10M BUILD_DIR=build-bench JOBS=2 bench/cpu_train.sh
#
# At the end it runs trident-bench-gemm (the packed GEMM against Eigen at these models' shapes,
# GEMM_ROUNDS rounds; 0 skips it) and embeds its results in the JSON as "gemm_microbenchmark".
#
# Installs Debian's torch and a threaded OpenBLAS if missing (torch's BLAS is libblas.so.3,
# which is the slow reference BLAS without OpenBLAS), builds trident-bench-cpu-train, then for
# every (config, threads) runs the implementations alternately, ROUNDS times each, so that
# machine noise (other jobs, frequency changes) hits all of them. Reports the median tokens/s
# and the ratio trident/torch. Writes bench/results/cpu_train-<UTC date>.json with the machine,
# the load average, the exact commands and every raw JSON line; prints a short table.
#
# With more than one thread, each runs twice: with OpenMP's default wait policy (its threads
# spin after each parallel region; for torch, OpenBLAS's own pthread pool then fights them for
# the cores, and any other job on the machine makes spinning pools collapse) and with
# OMP_WAIT_POLICY=passive ("*_passive"). "ratio" compares the defaults, "ratio_best" the faster
# setting of each.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build-bench}"
JOBS="${JOBS:-2}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-1 2}"
ONLY="${ONLY:-}"  # run only the config of this name
GEMM_ROUNDS="${GEMM_ROUNDS:-5}"  # rounds of the GEMM micro-benchmark at the end; 0 skips it
# Before each run, wait (up to QUIET_WAIT seconds) until other processes use less than
# QUIET_BUSY percent of all cores over one second; the busy figure is recorded with the run.
QUIET_BUSY="${QUIET_BUSY:-15}"
QUIET_WAIT="${QUIET_WAIT:-90}"
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
cmake --build "$BUILD_DIR" --target trident-bench-cpu-train trident-bench-gemm -j "$JOBS"
TRIDENT_BIN="$BUILD_DIR/bench/trident-bench-cpu-train"
GEMM_BIN="$BUILD_DIR/bench/trident-bench-gemm"

# --- configs: name|model and batch arguments|timed steps|warmup steps -------------------------
CONFIGS=(
  "tiny|--vocab 256 --block 64 --layers 4 --heads 4 --width 128 --batch 16 --seq 64|20|3"
  "10M|--vocab 4096 --block 256 --layers 5 --heads 6 --width 384 --batch 8 --seq 128|6|2"
)

# shellcheck source=bench/quiet.sh
source "$ROOT/bench/quiet.sh"

RAW="$(mktemp)"
trap 'rm -f "$RAW"' EXIT
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

for entry in "${CONFIGS[@]}"; do
  IFS='|' read -r name model_args steps warmup <<<"$entry"
  [[ -n $ONLY && $name != "$ONLY" ]] && continue
  for t in $THREADS; do
    common="$model_args --steps $steps --warmup-steps $warmup --threads $t --clip 1.0 --lr 3e-4"
    common+=" --seed 1337"
    # Every thread pool is pinned to t (torch also reads OpenBLAS's variable).
    envs="OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t"
    declare -A cmds=(
      [trident]="$envs $TRIDENT_BIN $common"
      [pytorch]="$envs $TORCH_PY bench/cpu_train_torch.py $common"
    )
    impls=(trident pytorch)
    if ((t > 1)); then
      cmds[trident_passive]="$envs OMP_WAIT_POLICY=passive $TRIDENT_BIN $common"
      cmds[pytorch_passive]="$envs OMP_WAIT_POLICY=passive $TORCH_PY bench/cpu_train_torch.py $common"
      impls+=(trident_passive pytorch_passive)
    fi
    for ((r = 0; r < ROUNDS; ++r)); do
      # Rotate who goes first so that none always runs right after the same neighbour.
      n=${#impls[@]}
      for ((i = 0; i < n; ++i)); do
        impl="${impls[(i + r) % n]}"
        busy="$(wait_quiet)"
        load="$(cut -d' ' -f1 /proc/loadavg)"
        # shellcheck disable=SC2086  # the command line is split into words on purpose
        line="$(env ${cmds[$impl]} | tail -n 1)"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$t" "$r" "$impl" "$load" "$busy" "$line" \
          >>"$RAW"
        printf '%-5s threads %s round %s %-16s %6s tok/s (others busy %s%%, load %s)\n' "$name" \
          "$t" "$r" "$impl" "$(sed -E 's/.*"tokens_per_s": ?([0-9.]+).*/\1/' <<<"$line" |
            cut -d. -f1)" "$busy" "$load"
      done
    done
    for impl in "${impls[@]}"; do
      printf '%s\t%s\tcommand\t%s\t%s\n' "$name" "$t" "$impl" "${cmds[$impl]}" >>"$RAW"
    done
    unset cmds
  done
done

# The GEMM micro-benchmark (packed kernel vs Eigen at these models' shapes), embedded in the JSON.
GEMM_JSON="$(mktemp)"
trap 'rm -f "$RAW" "$GEMM_JSON"' EXIT
if ((GEMM_ROUNDS > 0)); then
  echo "GEMM micro-benchmark (others busy $(wait_quiet)%)"
  "$GEMM_BIN" --threads "${THREADS// /,}" --rounds "$GEMM_ROUNDS" --json "$GEMM_JSON" | grep "geometric mean"
fi

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/cpu_train-$(date -u +%Y-%m-%d).json"
[[ -e $OUT ]] && OUT="$RESULTS_DIR/cpu_train-$(date -u +%Y-%m-%dT%H%M%S).json"

RAW="$RAW" GEMM_JSON="$GEMM_JSON" OUT="$OUT" START="$START" LOAD_BEFORE="$LOAD_BEFORE" \
  LOAD_AFTER="$LOAD_AFTER" \
  ROUNDS="$ROUNDS" QUIET_BUSY="$QUIET_BUSY" "$TORCH_PY" - <<'EOF'
import json, os, statistics, subprocess

def lscpu(field):
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return "unknown"

runs, commands = {}, {}
with open(os.environ["RAW"]) as f:
    for row in f.read().splitlines():
        name, threads, rnd, impl, rest = row.split("\t", 4)
        key = (name, int(threads))
        if rnd == "command":
            commands.setdefault(key, {})[impl] = rest
            continue
        load, busy, line = rest.split("\t", 2)
        r = json.loads(line)
        r["variant"], r["round"], r["load_1min_before"] = impl, int(rnd), float(load)
        r["other_cpu_busy_percent_before"] = int(busy)
        runs.setdefault(key, []).append(r)

loads = [float(x) for x in (os.environ["LOAD_BEFORE"] + " " + os.environ["LOAD_AFTER"]).split()]
results = []
for key, rs in runs.items():
    by = {}
    for r in rs:
        by.setdefault(r["variant"], []).append(r)
    med = {v: statistics.median(r["tokens_per_s"] for r in x) for v, x in by.items()}
    cpu = {v: statistics.median(r["step_cpu_ms"] for r in x) for v, x in by.items()
           if all("step_cpu_ms" in r for r in x)}
    best = {v: x[0]["tokens_per_step"] / (min(r["step_ms_min"] for r in x) / 1e3)
            for v, x in by.items()}
    best_of = {impl: max(m for v, m in med.items() if v.startswith(impl))
               for impl in ("trident", "pytorch")}
    results.append({
        "config": key[0], "threads": key[1], "params": by["pytorch"][0]["params"],
        "params_trident": by["trident"][0]["params"],
        "model": by["pytorch"][0]["config"],
        "tokens_per_s_median": med,
        "ratio_trident_over_pytorch": med["trident"] / med["pytorch"],
        "ratio_best": best_of["trident"] / best_of["pytorch"],
        # From the fastest single step of all rounds: less sensitive to other jobs on the cores.
        "tokens_per_s_best_step": best,
        "tokens_per_s_rounds": {v: [r["tokens_per_s"] for r in x] for v, x in by.items()},
        # Process CPU time per step: with one thread, the work itself, which other jobs on the
        # machine barely change (they stretch wall time instead).
        "step_cpu_ms_median": cpu,
        "ratio_cpu_pytorch_over_trident": (cpu["pytorch"] / cpu["trident"]
                                           if "pytorch" in cpu and "trident" in cpu else None),
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
    "load_average_before": os.environ["LOAD_BEFORE"],
    "load_average_after": os.environ["LOAD_AFTER"],
    "note": ("machine busy (load average above 3): other jobs shared the cores; the runs were "
             "interleaved so all implementations saw it, but absolute numbers are low and "
             "multi-threaded runs suffer most") if max(loads) > 3 else
            "load average stayed at or below 3 (the benchmark itself adds 1-2)",
    "contended_runs": sum(r["other_cpu_busy_percent_before"] >= int(os.environ["QUIET_BUSY"])
                          for rs in runs.values() for r in rs),
    "contended_definition": "runs that started although other processes used >= QUIET_BUSY "
                            "percent of the cores in the second before (after waiting up to "
                            "QUIET_WAIT s); each run's figure is other_cpu_busy_percent_before",
    "rounds": int(os.environ["ROUNDS"]),
    "summary": "median tokens/s over the rounds; ratio = trident / pytorch (>= 1: Trident "
               "faster); *_passive: with OMP_WAIT_POLICY=passive (threads > 1); ratio_best: "
               "the faster setting of each; "
               "best_step: tokens per step / fastest step of any round; "
               "ratio_cpu_pytorch_over_trident: median process CPU time per step, pytorch / "
               "trident (>= 1: Trident does the step with less CPU time; spinning threads "
               "count, so it is the load-independent measure for 1 thread only)",
    "results": results,
}
if os.path.getsize(os.environ["GEMM_JSON"]) > 0:
    with open(os.environ["GEMM_JSON"]) as f:
        doc["gemm_microbenchmark"] = json.load(f)
with open(os.environ["OUT"], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")

print(f"\n{'config':6s} {'params':>10s} {'threads':>7s} {'trident':>8s} {'torch':>8s} "
      f"{'ratio':>6s} {'trident passive':>15s} {'torch passive':>13s} {'ratio best':>10s} "
      f"{'cpu ratio':>9s}   (median tokens/s; cpu ratio: torch / trident CPU ms per step)")
for r in results:
    m = r["tokens_per_s_median"]
    tp, pp = (f"{m[v]:.0f}" if v in m else "-" for v in ("trident_passive", "pytorch_passive"))
    c = r["ratio_cpu_pytorch_over_trident"]
    cr = f"{c:.2f}" if c is not None else "-"
    print(f"{r['config']:6s} {r['params']:>10,d} {r['threads']:>7d} {m['trident']:>8.0f} "
          f"{m['pytorch']:>8.0f} {r['ratio_trident_over_pytorch']:>6.2f} {tp:>15s} {pp:>13s} "
          f"{r['ratio_best']:>10.2f} {cr:>9s}")
print(f"load average before {os.environ['LOAD_BEFORE']}, after {os.environ['LOAD_AFTER']}")
print(f"wrote {os.environ['OUT']}")
EOF
