#!/usr/bin/env bash
# The default training job (trident-train with no recipe flags: the built-in addition data and
# its own recipe) over seeds and builds: does every run learn the addition table, ending within
# 0.01 of the best possible val loss (0.5756)? For each run: final train and val loss, the step
# where the plateau ends (first step whose 50-step mean train loss is below 0.75) and where the
# table is learned (mean below 0.60), the wall time and how busy the machine was before it.
#
#   bench/default_run_seeds.sh                        # seeds 1-8 and 1337 on three builds
#   SEEDS="1 2" BUILDS="native=build/release" THREADS=2 bench/default_run_seeds.sh
#
# BUILDS is a list of KIND=DIR: native (-DTRIDENT_NATIVE=ON: -march=native), avx2
# (-march=x86-64-v3: AVX2 + FMA, no AVX-512; run with TRIDENT_CPU_ISA=avx2) and generic (the
# default portable build run with TRIDENT_CPU_ISA=generic: SSE2, Eigen's GEMM); a DIR
# without a CMakeCache.txt is configured here with that kind's flags. THREADS is --threads
# (results do not depend on it; 1 is fastest on a busy machine). ARGS are appended to every
# command (e.g. ARGS="--steps 1200"). Writes bench/results/default_run_seeds-<UTC date>.json
# (machine, commands, every run) and prints a table; exits 1 if any run misses the floor + 0.01.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILDS="${BUILDS:-native=build/seeds-native avx2=build/seeds-avx2 generic=build/seeds-generic}"
SEEDS="${SEEDS:-1 2 3 4 5 6 7 8 1337}"
THREADS="${THREADS:-1}"
ARGS="${ARGS:-}"
JOBS="${JOBS:-2}"
RESULTS_DIR="${RESULTS_DIR:-bench/results}"
cd "$ROOT"
# shellcheck source=bench/quiet.sh
source bench/quiet.sh

declare -A FLAGS=([native]="-DTRIDENT_NATIVE=ON"
                  [avx2]="-DTRIDENT_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3"
                  [generic]="-DTRIDENT_NATIVE=OFF")
# The GEMM picks its kernel at run time (cpu_isa.hpp): each kind is held to its own level.
declare -A ISA=([native]="" [avx2]=avx2 [generic]=generic)
for b in $BUILDS; do
  kind=${b%%=*} dir=${b#*=}
  [[ -v FLAGS[$kind] ]] || { echo "unknown build kind '$kind' (native, avx2, generic)" >&2; exit 2; }
  if [[ ! -f $dir/CMakeCache.txt ]]; then
    # shellcheck disable=SC2086
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRIDENT_ENABLE_CUDA=OFF ${FLAGS[$kind]}
  fi
  cmake --build "$dir" --target trident-train -j "$JOBS"
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
RAW="$TMP/raw.tsv"
: >"$RAW"
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
printf '%-8s %5s | %10s %9s | %7s %7s | %7s %6s\n' build seed train val plateau learned wall busy
for b in $BUILDS; do
  kind=${b%%=*} dir=${b#*=}
  for seed in $SEEDS; do
    out="$TMP/$kind-$seed"
    cmd="env TRIDENT_CPU_ISA=${ISA[$kind]} $dir/examples/trident-train --seed $seed"
    cmd+=" --threads $THREADS --out-dir $out $ARGS"
    busy=$(cpu_busy)
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    $cmd >"$out.log" 2>&1 || { echo "failed: $cmd" >&2; cat "$out.log" >&2; exit 1; }
    wall=$(echo "$(date +%s.%N) - $t0" | bc)
    read -r train val < <(sed -nE 's/.*final train loss ([0-9.]+) \| val loss ([0-9.]+).*/\1 \2/p' "$out.log")
    read -r plateau learned < <(python3 - "$out/metrics.jsonl" <<'PY'
import json, sys
loss = [j["loss"] for j in map(json.loads, open(sys.argv[1])) if "loss" in j]
def first_below(limit, n=50):
    return next((str(i) for i in range(n, len(loss) + 1) if sum(loss[i - n:i]) / n < limit), "-")
print(first_below(0.75), first_below(0.60))
PY
)
    printf '%-8s %5s | %10s %9s | %7s %7s | %6.1fs %5s%%\n' "$kind" "$seed" "$train" "$val" \
      "$plateau" "$learned" "$wall" "$busy"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$dir" "$seed" "$train" "$val" \
      "$plateau" "$learned" "$wall" "$busy" "$cmd" >>"$RAW"
  done
done

mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/default_run_seeds-$(date -u +%Y-%m-%d).json"
[[ -e $OUT ]] && OUT="$RESULTS_DIR/default_run_seeds-$(date -u +%Y-%m-%dT%H%M%S).json"
RAW="$RAW" OUT="$OUT" START="$START" python3 - <<'PY'
import json, os, subprocess

def lscpu(field):
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None

def cache(d, key):
    for line in open(os.path.join(d, "CMakeCache.txt")):
        if line.startswith(key + ":"):
            return line.split("=", 1)[1].strip()
    return None

def avx512(d):  # does this build's compiler and flags enable AVX-512?
    flags = cache(d, "CMAKE_CXX_FLAGS") or ""
    if cache(d, "TRIDENT_NATIVE") == "ON":
        flags += " -march=native"
    p = subprocess.run(f"{cache(d, 'CMAKE_CXX_COMPILER')} {flags} -dM -E -x c++ /dev/null",
                       shell=True, capture_output=True, text=True)
    return "__AVX512F__" in p.stdout

floor = 0.5756
runs, builds = [], {}
for line in open(os.environ["RAW"]):
    kind, d, seed, train, val, plateau, learned, wall, busy, cmd = line.rstrip("\n").split("\t")
    if kind not in builds:
        src = cache(d, "CMAKE_HOME_DIRECTORY")
        rev = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True,
                             text=True).stdout.strip() or None
        builds[kind] = {"dir": d, "source": src, "git_head": rev,
                        "trident_native": cache(d, "TRIDENT_NATIVE"),
                        "cxx_flags": cache(d, "CMAKE_CXX_FLAGS"), "avx512": avx512(d)}
    num = lambda s: None if s == "-" else int(s)
    runs.append({"build": kind, "seed": int(seed), "final_train_loss": float(train),
                 "val_loss": float(val), "plateau_end_step": num(plateau),
                 "learned_step": num(learned), "wall_s": float(wall),
                 "cpu_busy_percent_before": int(busy), "command": cmd})
vals = [r["val_loss"] for r in runs]
doc = {"benchmark": "default_run_seeds", "start": os.environ["START"],
       "machine": {"cpu": lscpu("Model name"), "cores": os.cpu_count()},
       "floor": floor, "pass_if_val_at_most": floor + 0.01, "builds": builds, "runs": runs,
       "summary": {"runs": len(runs), "val_min": min(vals), "val_max": max(vals),
                   "all_pass": all(v <= floor + 0.01 for v in vals)}}
json.dump(doc, open(os.environ["OUT"], "w"), indent=1)
s = doc["summary"]
print(f"val loss {s['val_min']:.4f}-{s['val_max']:.4f} over {s['runs']} runs "
      f"(floor {floor}, pass <= {floor + 0.01:.4f}): {'all pass' if s['all_pass'] else 'FAIL'}")
print(f"wrote {os.environ['OUT']}")
PY
python3 -c "import json,sys; sys.exit(0 if json.load(open('$OUT'))['summary']['all_pass'] else 1)"
