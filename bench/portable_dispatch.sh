#!/usr/bin/env bash
# Portable build with run-time CPU dispatch against the machine-specific build (issue 15):
#   native:   -DTRIDENT_NATIVE=ON (-march=native everywhere; the packed GEMM is its AVX2 kernel)
#   dispatch: the default build (x86-64 baseline), the GEMM kernel picked at run time, run at
#             every level this CPU has (TRIDENT_CPU_ISA=avx512, avx2, generic = Eigen's product)
# Same commands on both: trident-bench-gemm (packed GEMM at the GPT's shapes) and trident-train
# (the default job, STEPS steps, then an optional second job TRAIN2_ARGS), alternating the
# variants ROUNDS times so machine noise hits all of them; KINDS picks the parts (gemm train). Losses per step are compared with
# the native build's, bit for bit (the largest difference is recorded when they are not equal).
#
#   bench/portable_dispatch.sh                         # builds build/bench-native, build/bench-dispatch
#   NATIVE=build/h-port-native DISPATCH=build/h-port-dispatch ROUNDS=3 bench/portable_dispatch.sh
#
# A DIR without a CMakeCache.txt is configured here (from this tree). THREADS is OMP_NUM_THREADS
# of the training runs, GEMM_THREADS that of the GEMM benchmark (default: THREADS). GEMM numbers
# are reported as the median and the best over all rounds (on a shared machine, the best is the
# one least disturbed by other jobs). Writes bench/results/portable_dispatch-<UTC date>.json
# (machine, commands, raw numbers) and prints a table.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATIVE="${NATIVE:-build/bench-native}"
DISPATCH="${DISPATCH:-build/bench-dispatch}"
ROUNDS="${ROUNDS:-2}"
STEPS="${STEPS:-100}"
THREADS="${THREADS:-2}"
GEMM_ROUNDS="${GEMM_ROUNDS:-3}"
GEMM_THREADS="${GEMM_THREADS:-$THREADS}"
KINDS="${KINDS:-gemm train}"
TRAIN2_ARGS="${TRAIN2_ARGS:-}"
JOBS="${JOBS:-2}"
RESULTS_DIR="${RESULTS_DIR:-bench/results}"
QUIET_BUSY="${QUIET_BUSY:-60}"
QUIET_WAIT="${QUIET_WAIT:-30}"
cd "$ROOT"
# shellcheck source=bench/quiet.sh
source bench/quiet.sh

configure() {  # DIR NATIVE(ON|OFF)
  if [[ ! -f $1/CMakeCache.txt ]]; then
    cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRIDENT_ENABLE_CUDA=OFF \
      -DTRIDENT_BUILD_TESTS=OFF "-DTRIDENT_NATIVE=$2" >/dev/null
  fi
  cmake --build "$1" --target trident-train trident-bench-gemm -j "$JOBS" >/dev/null
}
configure "$NATIVE" ON
configure "$DISPATCH" OFF
grep -q '^TRIDENT_NATIVE:BOOL=ON' "$NATIVE/CMakeCache.txt" ||
  { echo "$NATIVE is not a TRIDENT_NATIVE=ON build" >&2; exit 2; }
grep -q '^TRIDENT_NATIVE:BOOL=OFF' "$DISPATCH/CMakeCache.txt" ||
  { echo "$DISPATCH is not a portable (TRIDENT_NATIVE=OFF) build" >&2; exit 2; }

supported=$(grep -o -w -E 'avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')
levels=(generic)
[[ $supported == *avx2* ]] && levels+=(avx2)
[[ $supported == *avx512f* ]] && levels+=(avx512)
# Variants: NAME=DIR:TRIDENT_CPU_ISA (empty: unset)
variants=("native=$NATIVE:")
for l in "${levels[@]}"; do variants+=("dispatch-$l=$DISPATCH:$l"); done

work=$(mktemp -d /tmp/trident-portable-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "variants: ${variants[*]}; rounds $ROUNDS; threads $THREADS; work $work"

run_variant() {  # VARIANT ROUND KIND(gemm|train|train2)
  local name=${1%%=*} rest=${1#*=}
  local dir=${rest%%:*} isa=${rest#*:}
  local out="$work/$3-$name-$2" busy
  # Eigen's level has no packed kernel to time (the benchmark's eigen column is that path).
  [[ $3 == gemm && $isa == generic ]] && return 0
  busy=$(wait_quiet)
  local env=(env "OMP_NUM_THREADS=$THREADS")
  [[ -n $isa ]] && env+=("TRIDENT_CPU_ISA=$isa")
  case $3 in
    gemm)
      "${env[@]}" "OMP_NUM_THREADS=$GEMM_THREADS" "$dir/bench/trident-bench-gemm" \
        --threads "$GEMM_THREADS" --rounds "$GEMM_ROUNDS" --json "$out.json" >"$out.log" 2>&1
      ;;
    train)
      "${env[@]}" "$dir/examples/trident-train" --steps "$STEPS" --log-interval "$STEPS" \
        --out-dir "$out" >"$out.log" 2>&1
      ;;
    train2)
      # shellcheck disable=SC2086
      "${env[@]}" "$dir/examples/trident-train" $TRAIN2_ARGS --out-dir "$out" >"$out.log" 2>&1
      ;;
  esac
  echo "$busy" >"$out.busy"
  echo "  $3 $name round $2 (machine busy before: $busy%)"
}

read -r -a kinds <<<"$KINDS"
[[ -n $TRAIN2_ARGS ]] && kinds+=(train2)
for kind in "${kinds[@]}"; do
  for ((r = 1; r <= ROUNDS; ++r)); do
    for v in "${variants[@]}"; do run_variant "$v" "$r" "$kind"; done
  done
done

mkdir -p "$RESULTS_DIR"
json="$RESULTS_DIR/portable_dispatch-$(date -u +%Y-%m-%dT%H%M%S).json"
python3 - "$work" "$json" "$ROUNDS" "$STEPS" "$THREADS" "$TRAIN2_ARGS" "${variants[@]}" <<'EOF'
import glob, json, os, platform, re, statistics, subprocess, sys, datetime

work, out, rounds, steps, threads, train2 = sys.argv[1:7]
variants = [v.split("=", 1)[0] for v in sys.argv[7:]]
rounds = int(rounds)

def read(path):
    with open(path) as f:
        return f.read()

def losses(run_dir):
    rows = [json.loads(l) for l in read(os.path.join(run_dir, "metrics.jsonl")).splitlines()[1:]]
    return [r["loss"] for r in rows if "loss" in r]

def wall(log):
    m = re.search(r"done in ([0-9.]+) s", log)
    return float(m.group(1)) if m else None

model = re.search(r"model name\s*:\s*(.*)", read("/proc/cpuinfo"))
doc = {
    "benchmark": "portable build with run-time dispatch vs -march=native (bench/portable_dispatch.sh)",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"cpu": model.group(1) if model else platform.processor(),
                "cores": os.cpu_count(), "kernel": platform.release(),
                "avx512f": "avx512f" in read("/proc/cpuinfo")},
    "command": " ".join(["bench/portable_dispatch.sh"] + [f"{k}={os.environ.get(k, '')}" for k in
                        ("NATIVE", "DISPATCH", "ROUNDS", "STEPS", "THREADS", "GEMM_THREADS",
                         "GEMM_ROUNDS", "KINDS", "TRAIN2_ARGS")
                        if os.environ.get(k)]),
    "threads": int(threads), "rounds": rounds, "train_steps": int(steps),
    "variants": variants, "gemm": {}, "train": {}, "train2": {},
}
# GEMM: per variant, per shape, the median over rounds of the packed kernel's GFLOP/s.
for v in variants:
    per_shape = {}
    for f in sorted(glob.glob(f"{work}/gemm-{v}-*.json")):
        for r in json.loads(read(f))["results"]:
            key = f'{r["model"]} {r["gemm"]} threads {r["threads"]}'
            per_shape.setdefault(key, []).append(r)
    if per_shape:
        doc["gemm"][v] = {k: rs for k, rs in per_shape.items()}

def gflops(r, impl):
    return r.get("gflops_median", {}).get(impl)

def geo(xs):
    xs = [x for x in xs if x]
    return statistics.geometric_mean(xs) if xs else None

summary = {}
for v, shapes in doc["gemm"].items():
    packed = [statistics.median([gflops(r, "packed") for r in rs if gflops(r, "packed")] or [0])
              for rs in shapes.values()]
    eigen = [statistics.median([gflops(r, "eigen") for r in rs if gflops(r, "eigen")] or [0])
             for rs in shapes.values()]
    best = [max(x for r in rs for x in r["gflops_rounds"]["packed"]) for rs in shapes.values()]
    best_eigen = [max(x for r in rs for x in r["gflops_rounds"]["eigen"])
                  for rs in shapes.values()]
    summary[v] = {"packed_gflops_geomean": geo(packed), "eigen_gflops_geomean": geo(eigen),
                  "packed_best_gflops_geomean": geo(best),
                  "eigen_best_gflops_geomean": geo(best_eigen), "shapes": len(best)}
doc["gemm_summary"] = summary

for kind in ("train", "train2"):
    ref = None
    for v in variants:
        runs = sorted(glob.glob(f"{work}/{kind}-{v}-*.log"))
        if not runs:
            continue
        walls = [wall(read(f)) for f in runs]
        ls = [losses(f[:-4]) for f in runs]
        entry = {"wall_s": walls, "wall_s_median": statistics.median([w for w in walls if w]),
                 "busy_before_percent": [int(read(f[:-4] + ".busy")) for f in runs],
                 "losses": ls[0], "rounds_agree_bitwise": all(l == ls[0] for l in ls)}
        if ref is None:
            ref = ls[0]
        else:
            n = min(len(ref), len(ls[0]))
            diff = [abs(a - b) for a, b in zip(ref[:n], ls[0][:n])]
            entry["vs_native"] = {"identical": ls[0] == ref, "max_abs_loss_diff": max(diff),
                                  "first_differing_step": next((i + 1 for i, d in enumerate(diff)
                                                                if d != 0), None),
                                  "final_loss_diff": ls[0][n - 1] - ref[n - 1]}
        doc[kind][v] = entry
    if doc[kind] and variants[0] in doc[kind]:
        base = doc[kind][variants[0]]["wall_s_median"]
        for v, e in doc[kind].items():
            e["time_ratio_vs_native"] = e["wall_s_median"] / base
if train2:
    doc["train2_args"] = train2

with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")

print("\nGEMM: geometric mean GFLOP/s over the shapes, median / best over the rounds")
print(f"{'variant':<18} {'packed GF/s':>13} {'eigen GF/s':>13} "
      f"{'train s':>8} {'ratio':>6} {'losses vs native':>24}")
for v in variants:
    g = summary.get(v, {})
    t = doc["train"].get(v, {})
    vs = t.get("vs_native")
    same = "-" if not t else "(reference)" if vs is None else (
        "bitwise identical" if vs["identical"] else f"max |diff| {vs['max_abs_loss_diff']:.2e}")
    pg = f"{g.get('packed_gflops_geomean') or 0:.1f}/{g.get('packed_best_gflops_geomean') or 0:.1f}"
    eg = f"{g.get('eigen_gflops_geomean') or 0:.1f}/{g.get('eigen_best_gflops_geomean') or 0:.1f}"
    print(f"{v:<18} {pg:>13} {eg:>13} {t.get('wall_s_median', 0):>8.2f} "
          f"{t.get('time_ratio_vs_native', 0):>6.3f} {same:>24}")
for v, t in doc["train2"].items():
    vs = t.get("vs_native")
    print(f"train2 {v:<18} {t['wall_s_median']:.2f} s ratio {t['time_ratio_vs_native']:.3f} "
          + ("" if vs is None else ("identical" if vs["identical"]
                                    else f"max |diff| {vs['max_abs_loss_diff']:.2e}")))
print(f"wrote {out}")
EOF
