#!/usr/bin/env bash
# Pipeline bubble fraction and activation memory of GPipe and 1F1B, measured against the ideal
# bubble (p - 1) / (m + p - 1), for p = 2 and 4 stages and m = 4 and 8 micro-batches.
#
#   bench/pipeline_bubble.sh
#   STAGES="2 4" MICRO_BATCHES=4,8 STEPS=4 BUILD_DIR=build-pp JOBS=2 bench/pipeline_bubble.sh
#
# Builds trident-bench-pipeline, runs it under mpirun with one rank per stage (one OpenMP thread
# per rank), and writes bench/results/pipeline-<UTC date>.json with the machine, the load
# average, the exact commands and every raw JSON line; prints a short table. Definitions of the
# measured bubble and of the peak activation memory: the header of bench/pipeline_bubble.cpp.
# The model is sized so that a micro-batch's compute (hundreds of ms a stage) dwarfs the
# transfer of its (b, T, C) activation through shared memory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build-pp}"
JOBS="${JOBS:-2}"
STAGES="${STAGES:-2 4}"
MICRO_BATCHES="${MICRO_BATCHES:-4,8}"
STEPS="${STEPS:-4}"
WARMUP_STEPS="${WARMUP_STEPS:-1}"
MODEL_ARGS="${MODEL_ARGS:---vocab 512 --block 128 --layers 8 --heads 4 --width 256 --micro-batch 4 --seq 128}"
cd "$ROOT"

if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRIDENT_ENABLE_CUDA=OFF
fi
cmake --build "$BUILD_DIR" --target trident-bench-pipeline -j "$JOBS"
BIN="$BUILD_DIR/bench/trident-bench-pipeline"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none)

RAW="$(mktemp)"
trap 'rm -f "$RAW"' EXIT
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
COMMANDS=()
for p in $STAGES; do
  cmd="${MPIRUN[*]} -np $p $BIN $MODEL_ARGS --micro-batches $MICRO_BATCHES --schedules gpipe,1f1b --steps $STEPS --warmup-steps $WARMUP_STEPS --threads 1"
  COMMANDS+=("OMP_NUM_THREADS=1 $cmd")
  echo "p=$p: $cmd (load $(cut -d' ' -f1 /proc/loadavg))"
  $cmd | tee -a "$RAW" | cut -c1-100
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p bench/results
OUT="bench/results/pipeline-$(date -u +%Y-%m-%d).json"
[[ -e $OUT ]] && OUT="bench/results/pipeline-$(date -u +%Y-%m-%dT%H%M%S).json"

RAW="$RAW" OUT="$OUT" START="$START" LOAD_BEFORE="$LOAD_BEFORE" LOAD_AFTER="$LOAD_AFTER" \
  COMMANDS="$(printf '%s\n' "${COMMANDS[@]}")" python3 - <<'EOF'
import json, os, subprocess

def lscpu(field):
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return "unknown"

with open(os.environ["RAW"]) as f:
    runs = [json.loads(line) for line in f if line.startswith("{")]
cores = os.cpu_count()
loads = [float(x) for x in (os.environ["LOAD_BEFORE"] + " " + os.environ["LOAD_AFTER"]).split()]
max_p = max(r["p"] for r in runs)
note = (f"{cores} cores shared with other jobs (load average up to {max(loads):.1f}); "
        f"one rank per stage, one thread per rank. ")
if max_p > cores:
    note += (f"With p > {cores} ranks are oversubscribed: in the steady state all stages compute "
             "at once and share the cores (each op slows), while during fill and drain fewer "
             "stages compete, so p = 4 timings and bubble fractions are distorted (in either "
             "direction, with the other jobs' load on top). ")
note += "Peak activation bytes do not depend on timing."
summary = []
for r in runs:
    summary.append({
        "p": r["p"], "m": r["m"], "schedule": r["schedule"],
        "bubble_ideal": r["bubble_ideal"], "bubble_measured": r["bubble_measured"],
        "step_s_median": r["step_s_median"],
        "peak_activation_mib_per_stage": [s["peak_activation_bytes"] / 2**20 for s in r["stages"]],
        "max_in_flight_per_stage": [s["max_in_flight"] for s in r["stages"]],
    })
doc = {
    "benchmark": "pipeline bubble and activation memory, GPipe vs 1F1B (bench/pipeline_bubble.sh)",
    "definition": ("bubble(stage) = comm_wait_s / step_s of that stage: time blocked on "
                   "neighbours (activation/gradient receives, send completion, the step's opening "
                   "broadcast and closing loss all-reduce) over the wall time of "
                   "PipelineSchedule::run; bubble_measured = median over timed steps of the mean "
                   "over stages. bubble_ideal = (p-1)/(m+p-1). peak activation = allocator peak "
                   "during the step above the bytes in use at its start, max over steps."),
    "date": os.environ["START"],
    "machine": {"cpu": lscpu("Model name"), "cores": cores, "host": os.uname().nodename,
                "threads_per_core": lscpu("Thread(s) per core")},
    "load_average_before": os.environ["LOAD_BEFORE"], "load_average_after": os.environ["LOAD_AFTER"],
    "note": note,
    "commands": os.environ["COMMANDS"].strip().splitlines(),
    "summary": summary,
    "raw": runs,
}
with open(os.environ["OUT"], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")

print(f"\n{'p':>2s} {'m':>2s} {'schedule':8s} {'ideal':>6s} {'measured':>8s} {'step s':>7s} "
      f"{'in flight s0':>12s}  peak activation MiB per stage")
for s in sorted(summary, key=lambda s: (s["p"], s["m"], s["schedule"] != "gpipe")):
    mib = " ".join(f"{x:7.1f}" for x in s["peak_activation_mib_per_stage"])
    print(f"{s['p']:>2d} {s['m']:>2d} {s['schedule']:8s} {s['bubble_ideal']:>6.3f} "
          f"{s['bubble_measured']:>8.3f} {s['step_s_median']:>7.2f} "
          f"{s['max_in_flight_per_stage'][0]:>12d}  {mib}")
print(f"machine: {doc['machine']['cpu']}, {cores} cores; load average before "
      f"{os.environ['LOAD_BEFORE']}, after {os.environ['LOAD_AFTER']}")
print(f"wrote {os.environ['OUT']}")
EOF
