#!/usr/bin/env bash
# Cost of timeline tracing, measured three ways:
#  1. the same trident-train run with and without --trace, interleaved (off/on, then on/off,
#     ...): step times from metrics.jsonl with the first WARMUP steps left out, the median step
#     of each run, then the median over runs of each mode (and the paired median of on/off - 1);
#  2. the CPU time (user + sys, all ranks) of each of those runs, less sensitive to a loaded
#     machine than wall time;
#  3. the recorder's CPU cost per event (trident-bench-trace-spans, thread CPU time) times the
#     events a traced run records per step and rank, over the untraced median step: the cost
#     the instrumentation adds by construction.
#
#   bench/trace_overhead.sh                       # 1 process, 2 ranks (pp 2), 4 ranks (tp 2 x pp 2)
#   ROUNDS=3 STEPS=20 CONFIGS=single BUILD_DIR=build-trace bench/trace_overhead.sh
#
# Writes bench/results/trace_overhead-<UTC date>.json (machine, load, commands, every run's
# step times, spans recorded per step) and prints a table. Traced runs write their files to
# a temporary directory, so the cost of writing them (after the last step) is not a step cost.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build-trace}"
JOBS="${JOBS:-2}"
ROUNDS="${ROUNDS:-5}"
STEPS="${STEPS:-40}"
WARMUP="${WARMUP:-5}"
CONFIGS="${CONFIGS:-single pp2 3d}"
RESULTS_DIR="${RESULTS_DIR:-bench/results}"
cd "$ROOT"

if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRIDENT_ENABLE_CUDA=OFF
fi
cmake --build "$BUILD_DIR" --target trident-train trident-bench-trace-spans -j "$JOBS"
BIN="$BUILD_DIR/examples/trident-train"
SPANS="$("$BUILD_DIR/bench/trident-bench-trace-spans")"
echo "recorder cost per event: $SPANS"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN="mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none --mca mpi_yield_when_idle 1"
declare -A CMD
declare -A RANKS
CMD[single]="$BIN --steps $STEPS --log-interval 1000"
RANKS[single]=1
# Two ranks, one a core: the pipeline records the most spans per step (per micro-batch compute,
# sends, receives and waits). 3d runs 4 ranks on the 2 cores, so its wall clock is the noisiest.
CMD[pp2]="$MPIRUN -np 2 $BIN --pp 2 --micro-batches 4 --batch 4 --seq 64 --steps $STEPS --log-interval 1000"
RANKS[pp2]=2
CMD[3d]="$MPIRUN -np 4 $BIN --tp 2 --pp 2 --micro-batches 4 --batch 4 --seq 64 --steps $STEPS --log-interval 1000"
RANKS[3d]=4

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
RAW="$TMP/raw.tsv"
: >"$RAW"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
for config in $CONFIGS; do
  for round in $(seq 1 "$ROUNDS"); do
    order="off on"
    (( round % 2 == 0 )) && order="on off"
    for mode in $order; do
      dir="$TMP/$config-$round-$mode"
      cmd="${CMD[$config]} --out-dir $dir"
      [[ $mode == on ]] && cmd="$cmd --trace $dir/trace.json"
      echo "$config round $round trace $mode (load $(cut -d' ' -f1 /proc/loadavg))"
      # The CPU seconds of the run and its children (every rank under mpirun).
      # shellcheck disable=SC2086
      cpu="$(python3 -c 'import resource, subprocess, sys
with open(sys.argv[1], "w") as log:
    rc = subprocess.run(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)
sys.exit(rc)' "$dir.log" $cmd)" || { cat "$dir.log"; exit 1; }
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$round" "$mode" "$dir" "${RANKS[$config]}" "$cpu" \
        "OMP_NUM_THREADS=1 $cmd" >>"$RAW"
    done
  done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/trace_overhead-$(date -u +%Y-%m-%d).json"
[[ -e $OUT ]] && OUT="$RESULTS_DIR/trace_overhead-$(date -u +%Y-%m-%dT%H%M%S).json"

RAW="$RAW" OUT="$OUT" START="$START" LOAD_BEFORE="$LOAD_BEFORE" LOAD_AFTER="$LOAD_AFTER" \
  WARMUP="$WARMUP" STEPS="$STEPS" SPANS="$SPANS" python3 - <<'PY'
import glob, json, os, statistics, subprocess

def lscpu(field):
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return "unknown"

warmup, steps = int(os.environ["WARMUP"]), int(os.environ["STEPS"])
spans = json.loads(os.environ["SPANS"])
runs = []
for row in open(os.environ["RAW"]).read().splitlines():
    config, rnd, mode, d, ranks, cpu, cmd = row.split("\t")
    step_ms = [j["step_ms"] for j in map(json.loads, open(d + "/metrics.jsonl")) if "loss" in j]
    r = {"config": config, "round": int(rnd), "trace": mode == "on", "command": cmd,
         "ranks": int(ranks), "cpu_s": float(cpu), "step_ms": step_ms,
         "median_step_ms": statistics.median(step_ms[warmup:]),
         "min_step_ms": min(step_ms[warmup:])}
    if mode == "on":  # spans and counters recorded per step, over all ranks
        n = 0
        for f in glob.glob(d + "/trace*.json"):
            n += sum(1 for e in json.load(open(f))["traceEvents"] if e["ph"] in ("X", "C"))
        r["events_per_step"] = n / steps
    runs.append(r)

summary = []
for config in dict.fromkeys(r["config"] for r in runs):
    off = [r["median_step_ms"] for r in runs if r["config"] == config and not r["trace"]]
    on = [r["median_step_ms"] for r in runs if r["config"] == config and r["trace"]]
    pairs = [o / f - 1 for o, f in zip(on, off)]
    ev = [r["events_per_step"] for r in runs if r["config"] == config and r["trace"]]
    cpu_off = [r["cpu_s"] for r in runs if r["config"] == config and not r["trace"]]
    cpu_on = [r["cpu_s"] for r in runs if r["config"] == config and r["trace"]]
    min_off = [r["min_step_ms"] for r in runs if r["config"] == config and not r["trace"]]
    min_on = [r["min_step_ms"] for r in runs if r["config"] == config and r["trace"]]
    ranks = next(r["ranks"] for r in runs if r["config"] == config)
    # Events per rank and step, each costing at most a renamed span's CPU time.
    bound_ms = statistics.median(ev) / ranks * spans["renamed_span_ns"] / 1e6
    summary.append({"config": config, "ranks": ranks, "runs_per_mode": len(off),
                    "median_step_ms_off": statistics.median(off),
                    "median_step_ms_on": statistics.median(on),
                    "overhead": statistics.median(on) / statistics.median(off) - 1,
                    "median_paired_overhead": statistics.median(pairs),
                    "min_step_ms_off": min(min_off), "min_step_ms_on": min(min_on),
                    "min_step_overhead": min(min_on) / min(min_off) - 1,
                    "cpu_s_off": statistics.median(cpu_off), "cpu_s_on": statistics.median(cpu_on),
                    "cpu_overhead": statistics.median(cpu_on) / statistics.median(cpu_off) - 1,
                    "events_per_step": statistics.median(ev),
                    "recorder_ms_per_rank_step": bound_ms,
                    "recorder_share_of_min_step": bound_ms / min(min_off)})

doc = {"benchmark": "trace_overhead", "date": os.environ["START"],
       "machine": {"cpu": lscpu("Model name"), "cores": os.cpu_count(),
                   "load_before": os.environ["LOAD_BEFORE"], "load_after": os.environ["LOAD_AFTER"]},
       "method": f"interleaved runs with and without --trace; median step of each run after {warmup} "
                 "warm-up steps; overhead = median over traced runs / median over untraced - 1",
       "recorder_cost_per_event_ns": spans, "summary": summary, "runs": runs}
json.dump(doc, open(os.environ["OUT"], "w"), indent=1)
print(f"\n{'config':7} {'median ms off/on':>17} {'overhead':>9} {'paired':>8} {'min ms off/on':>15} "
      f"{'min':>7} {'CPU s off/on':>13} {'CPU':>7} {'events':>7} {'recorder':>9}")
for s in summary:
    print(f"{s['config']:7} {s['median_step_ms_off']:8.1f}/{s['median_step_ms_on']:<8.1f} "
          f"{100*s['overhead']:8.2f}% {100*s['median_paired_overhead']:7.2f}% "
          f"{s['min_step_ms_off']:7.1f}/{s['min_step_ms_on']:<7.1f} {100*s['min_step_overhead']:6.2f}% "
          f"{s['cpu_s_off']:6.1f}/{s['cpu_s_on']:<6.1f} {100*s['cpu_overhead']:6.2f}% "
          f"{s['events_per_step']:7.0f} {100*s['recorder_share_of_min_step']:8.3f}%")
print("events: recorded per step over all ranks; recorder: their CPU cost per rank and step "
      "(renamed-span cost each) over the fastest untraced step")
print(f"\nwritten to {os.environ['OUT']}")
PY
