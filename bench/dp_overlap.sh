#!/usr/bin/env bash
# Data-parallel gradient reduction overlapped with backward, or not, and ZeRO-1: step time,
# exposed and total communication time for dp = 2 and 4 on a GPT whose gradients exceed 100 MB.
#
#   bench/dp_overlap.sh            # dp 2 and 4, buckets 25 and 5 MiB, overlap, no-overlap, zero
#   DPS="2" BUCKETS="25" ROUNDS=3 STEPS=4 MODES=overlap,no-overlap BUILD_DIR=build-dp bench/dp_overlap.sh
#
# Builds trident-bench-dp-overlap, runs it under mpirun (one rank per dp replica, one OpenMP
# thread each), writes bench/results/dp_overlap-<UTC date>.json with the machine, the load
# average, the exact commands and every raw JSON line, and prints a table. See
# bench/dp_overlap.cpp for what each number measures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build-dp}"
JOBS="${JOBS:-2}"
DPS="${DPS:-2 4}"
BUCKETS="${BUCKETS:-25 5}"  # MiB
ROUNDS="${ROUNDS:-4}"
STEPS="${STEPS:-4}"
MODES="${MODES:-overlap,no-overlap,zero}"
# ~29.4M parameters (117.8 MB of f32 gradients), 32 tokens per rank.
MODEL="${MODEL:---vocab 8192 --block 64 --layers 8 --heads 8 --width 512 --batch 1 --seq 32}"
RESULTS_DIR="${RESULTS_DIR:-bench/results}"
cd "$ROOT"

if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRIDENT_ENABLE_CUDA=OFF
fi
cmake --build "$BUILD_DIR" --target trident-bench-dp-overlap -j "$JOBS"
BIN="$BUILD_DIR/bench/trident-bench-dp-overlap"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
# Ranks plus their communication threads outnumber the cores: a thread waiting inside an MPI
# collective must yield its core (Open MPI only does so by itself when it knows it is
# oversubscribed), or it spins against its own rank's backward pass and its peers.
YIELD="${YIELD:-1}"
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none
  --mca mpi_yield_when_idle "$YIELD")

RAW="$(mktemp)"
trap 'rm -f "$RAW"' EXIT
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
for dp in $DPS; do
  for bucket in $BUCKETS; do
    args="$MODEL --bucket-mb $bucket --modes $MODES --rounds $ROUNDS --steps $STEPS --warmup-steps 1"
    cmd="${MPIRUN[*]} -np $dp $BIN $args"
    echo "dp $dp, $bucket MiB buckets: $cmd (load $(cut -d' ' -f1 /proc/loadavg))"
    # shellcheck disable=SC2086
    "${MPIRUN[@]}" -np "$dp" "$BIN" $args | grep '^{' | while IFS= read -r line; do
      printf '%s\t%s\n' "OMP_NUM_THREADS=1 $cmd" "$line" >>"$RAW"
    done
  done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$RESULTS_DIR"
OUT="$RESULTS_DIR/dp_overlap-$(date -u +%Y-%m-%d).json"
[[ -e $OUT ]] && OUT="$RESULTS_DIR/dp_overlap-$(date -u +%Y-%m-%dT%H%M%S).json"

RAW="$RAW" OUT="$OUT" START="$START" LOAD_BEFORE="$LOAD_BEFORE" LOAD_AFTER="$LOAD_AFTER" \
  python3 - <<'EOF'
import json, os, subprocess

def lscpu(field):
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return "unknown"

runs = []
with open(os.environ["RAW"]) as f:
    for row in f.read().splitlines():
        command, line = row.split("\t", 1)
        r = json.loads(line)
        r["mpirun_command"] = command
        runs.append(r)

summary = []
for dp, bucket in sorted({(r["dp"], r["config"]["bucket_mb"]) for r in runs}):
    by = {r["mode"]: r for r in runs if r["dp"] == dp and r["config"]["bucket_mb"] == bucket}
    for mode, r in by.items():
        comm = r["comm_s_median"]
        summary.append({
            "dp": dp, "bucket_mb": bucket, "buckets": r["buckets"], "mode": mode, "step_s": r["step_s_median"], "step_s_min": min(r["step_s"]),
            "forward_s": r["forward_s_median"], "backward_s": r["backward_s_median"],
            "exposed_comm_s": r["exposed_comm_s_median"],
            "exposed_comm_s_min": min(r["exposed_comm_s"]), "comm_s": comm,
            "hidden_fraction": 1 - r["exposed_comm_s_median"] / comm if comm > 0 else None,
            "optimizer_s": r["optimizer_s_median"],
            "optimizer_state_bytes_per_rank": r["optimizer_state_bytes_per_rank"],
        })
    if "overlap" in by and "no-overlap" in by:
        on, off = by["overlap"], by["no-overlap"]
        summary.append({
            "dp": dp, "bucket_mb": bucket, "comparison": "overlap vs no-overlap",
            "exposed_comm_reduction": 1 - on["exposed_comm_s_median"] / off["exposed_comm_s_median"],
            "step_time_speedup": off["step_s_median"] / on["step_s_median"],
        })

loads = [float(x) for x in (os.environ["LOAD_BEFORE"] + " " + os.environ["LOAD_AFTER"]).split()]
cores = os.cpu_count()
doc = {
    "benchmark": "data-parallel gradient all-reduce overlapped with backward vs after it, and "
                 "ZeRO-1 (bench/dp_overlap.sh, bench/dp_overlap.cpp): GPT, random tokens, fp32, "
                 "one OpenMP thread per rank, Open MPI shared memory",
    "date": os.environ["START"],
    "machine": {"cpu": lscpu("Model name"), "cores": cores, "host": os.uname().nodename,
                "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
    "trident_commit": subprocess.run(["git", "describe", "--always", "--dirty"],
                                     capture_output=True, text=True).stdout.strip(),
    "load_average_before": os.environ["LOAD_BEFORE"], "load_average_after": os.environ["LOAD_AFTER"],
    "note": (f"{cores} cores shared by the dp ranks, their communication threads and other users' "
             f"jobs (load average up to {max(loads):.1f}). Over shared memory an all-reduce is CPU "
             "work (copies and sums by the ranks' own cores), so overlapping it with backward on "
             "the same cores interleaves the two rather than hiding one behind the other: comm_s "
             "stretches while overlapped and backward slows. The last bucket (it holds the token "
             "embedding, whose gradient is final only at the end of backward) cannot overlap at "
             "all. 'hidden' = 1 - exposed/comm."),
    "summary": summary,
    "runs": runs,
}
with open(os.environ["OUT"], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")

print(f"\n{'dp':>2s} {'bucket':>9s} {'mode':10s} {'step s':>7s} {'(min)':>6s} {'fwd s':>6s} {'bwd s':>6s} "
      f"{'exposed s':>9s} {'(min)':>6s} {'comm s':>7s} {'hidden':>6s} {'optim s':>7s} "
      f"{'state MB/rank':>13s}")
for s in summary:
    if "mode" not in s:
        continue
    hidden = f"{100 * s['hidden_fraction']:5.0f}%" if s["hidden_fraction"] is not None else "   - "
    bucket = f"{s['bucket_mb']:g}MBx{s['buckets']}"
    print(f"{s['dp']:>2d} {bucket:>9s} {s['mode']:10s} {s['step_s']:7.2f} {s['step_s_min']:6.2f} "
          f"{s['forward_s']:6.2f} {s['backward_s']:6.2f} {s['exposed_comm_s']:9.2f} "
          f"{s['exposed_comm_s_min']:6.2f} {s['comm_s']:7.2f} {hidden:>6s} "
          f"{s['optimizer_s']:7.2f} {s['optimizer_state_bytes_per_rank'] / 1e6:13.1f}")
for s in summary:
    if "comparison" in s:
        print(f"dp {s['dp']}, {s['bucket_mb']:g} MiB buckets: overlap cuts exposed communication by "
              f"{100 * s['exposed_comm_reduction']:.0f}%, step time x{s['step_time_speedup']:.2f}")
print(f"medians (and minima) over {runs[0]['config']['rounds'] * runs[0]['config']['steps']} "
      "timed steps; "
      f"load average before {os.environ['LOAD_BEFORE']}, after {os.environ['LOAD_AFTER']}")
print(f"wrote {os.environ['OUT']}")
EOF
