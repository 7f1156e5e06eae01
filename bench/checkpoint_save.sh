#!/usr/bin/env bash
# Time to save and to load a GPT-2 124M checkpoint (parameters + AdamW state, 1.49 GB of HDF5)
# on the CPU, with one rank and with the layouts given in LAYOUTS (world rank 0 gathers and
# writes; every rank reads and slices its shard on load).
#
#   bench/checkpoint_save.sh
#   LAYOUTS="1:--dp=1 2:--pp=2 2:--tp=2,--vocab=50304" REPEATS=3 BUILD_DIR=build-ckpt bench/checkpoint_save.sh
#
# Each run trains one step (batch 1, seq 32), writes step_00000001.h5 and is stopped once the
# checkpoint line is printed (the final validation of a 124M model would take minutes); then a
# second run resumes from that file and is stopped once it has loaded it. Writes
# bench/results/checkpoint_save-<UTC date>.json with the machine, load, commands and times.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build-ckpt}"
JOBS="${JOBS:-2}"
LAYOUTS="${LAYOUTS:-1:--dp=1 2:--pp=2 2:--tp=2,--vocab=50304}"
REPEATS="${REPEATS:-3}"
WORK="${WORK:-$(mktemp -d)}"
cd "$ROOT"

if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRIDENT_ENABLE_CUDA=OFF
fi
cmake --build "$BUILD_DIR" --target trident-train -j "$JOBS"
BIN="$BUILD_DIR/examples/trident-train"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none)
ARGS=(--model gpt2 --steps 1 --batch 1 --seq 32 --threads 1 --log-interval 1)

# run_until LOG PATTERN CMD...: runs CMD until LOG has a line matching PATTERN, then stops it.
run_until() {
  local log=$1 pattern=$2
  shift 2
  "$@" >"$log" 2>&1 &
  local pid=$!
  for ((i = 0; i < 6000; ++i)); do
    grep -q "$pattern" "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep "$pattern" "$log" || { cat "$log"; echo "no '$pattern' line" >&2; exit 1; }
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
rows=()
for spec in $LAYOUTS; do
  np=${spec%%:*}
  flags=${spec#*:}
  flags=${flags//=/ }
  flags=${flags//,/ }
  for ((r = 1; r <= REPEATS; ++r)); do
    dir="$WORK/np${np}_${r}"
    rm -rf "$dir"
    launcher=()
    [[ $np -gt 1 ]] && launcher=("${MPIRUN[@]}" -np "$np")
    # shellcheck disable=SC2086
    save=$(run_until "$dir.save.log" "^checkpoint written" "${launcher[@]}" "$BIN" "${ARGS[@]}" \
      $flags --checkpoint-dir "$dir/ck" --out-dir "$dir")
    save_s=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' <<<"$save")
    bytes=$(stat -c %s "$dir/ck/step_00000001.h5")
    # shellcheck disable=SC2086
    load=$(run_until "$dir.load.log" "^resumed from" "${launcher[@]}" "$BIN" "${ARGS[@]}" --steps 2 \
      $flags --resume-from "$dir/ck/step_00000001.h5" --out-dir "$dir/resumed")
    load_s=$(sed -n 's/.* at step 1 in \([0-9.]*\) s.*/\1/p' <<<"$load")
    echo "ranks $np ($flags) run $r: save ${save_s} s, load ${load_s} s, $bytes bytes"
    rows+=("{\"ranks\": $np, \"flags\": \"$flags\", \"run\": $r, \"save_s\": $save_s, \"load_s\": $load_s, \"bytes\": $bytes}")
    rm -rf "$dir"
  done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p bench/results
out="bench/results/checkpoint_save-$(date -u +%Y-%m-%d).json"
{
  echo "{"
  echo "  \"benchmark\": \"checkpoint save/load, GPT-2 124M + AdamW state, CPU\","
  echo "  \"date\": \"$START\","
  echo "  \"machine\": \"$(uname -n), $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)\","
  echo "  \"load_average_before\": \"$LOAD_BEFORE\", \"load_average_after\": \"$LOAD_AFTER\","
  echo "  \"command\": \"LAYOUTS='$LAYOUTS' REPEATS=$REPEATS bench/checkpoint_save.sh\","
  echo "  \"train_args\": \"${ARGS[*]}\","
  echo "  \"runs\": ["
  for ((i = 0; i < ${#rows[@]}; ++i)); do
    sep=","
    [[ $i -eq $((${#rows[@]} - 1)) ]] && sep=""
    echo "    ${rows[$i]}$sep"
  done
  echo "  ]"
  echo "}"
} >"$out"
echo "wrote $out"
