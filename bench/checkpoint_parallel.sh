#!/usr/bin/env bash
# Checkpoint save and load: the parallel HDF5 writer (every rank writes and reads its own
# hyperslabs) against the rank-0 gather it replaced, at 1, 2, 4 and 8 ranks, for GPT-2 124M and
# GPT-2 medium (355M). Per rank: save and load seconds and peak resident memory (VmHWM).
#
#   bench/checkpoint_parallel.sh
#   MODELS="gpt2" LAYOUTS="1:--dp=1 8:--dp=2,--tp=2,--pp=2,--zero=1,--vocab=50304" \
#     bench/checkpoint_parallel.sh
#
# "parallel" is this tree's trident-train (BUILD_DIR, parallel HDF5); "rank0" is trident-train
# built from OLD_COMMIT (the commit before the parallel writer; serial HDF5, world rank 0 gathers
# and writes, every rank reads whole tensors and slices them), built in OLD_DIR.
# Each save run trains one step (batch 1, seq 32), writes step_00000001.h5 and is stopped once
# the checkpoint line is printed; each load run resumes from that file and is stopped once it
# has loaded it. VmHWM of every rank is read from /proc/<pid>/status: after the training step
# (before the save), after the save, and after the load. The machine has 2 cores: 4 and 8
# ranks are oversubscribed (and other jobs may share it: the load average is recorded).
# Writes bench/results/checkpoint_parallel-<UTC date>-<models>.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-build/h-h5}"
OLD_COMMIT="${OLD_COMMIT:-69bf811e9a60c54f1da57fe996b26a5b2f27e1ba}"
OLD_DIR="${OLD_DIR:-/tmp/h5-old}"
MODELS="${MODELS:-gpt2 gpt2-medium}"
LAYOUTS="${LAYOUTS:-1:--dp=1 2:--tp=2,--vocab=50304 4:--dp=2,--tp=2,--zero=1,--vocab=50304 8:--dp=2,--tp=2,--pp=2,--zero=1,--vocab=50304}"
WRITERS="${WRITERS:-parallel rank0}"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
cd "$ROOT"

cmake --build "$BUILD_DIR" --target trident-train -j 2 >/dev/null
NEW_BIN="$ROOT/$BUILD_DIR/examples/trident-train"
OLD_BIN="$OLD_DIR/build/examples/trident-train"
if [[ $WRITERS == *rank0* && ! -x $OLD_BIN ]]; then
  mkdir -p "$OLD_DIR"
  git archive "$OLD_COMMIT" | tar -x -C "$OLD_DIR"
  cmake -S "$OLD_DIR" -B "$OLD_DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTRIDENT_ENABLE_CUDA=OFF -DTRIDENT_BUILD_TESTS=OFF >/dev/null
  cmake --build "$OLD_DIR/build" --target trident-train -j 2 >/dev/null
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none)
ARGS=(--steps 1 --batch 1 --seq 32 --threads 1 --log-interval 1 --eval-interval 0)

# The trident-train processes of the job started as $1 (itself, or mpirun's children).
rank_pids() {
  (echo "$1"; pgrep -P "$1") | while read -r p; do
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == trident-train ]] && echo "$p"
  done
}

# VmHWM in MiB of every rank of the job started as $1, in rank order ("812.3 790.1").
peak_mib() {
  local p
  for p in $(rank_pids "$1"); do
    local rank
    rank=$(tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
    echo "${rank:-0} $(awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$p/status")"
  done | sort -n | cut -d' ' -f2 | paste -sd' '
}

# run LOG BEFORE_PATTERN AFTER_PATTERN CMD...: runs CMD; records VmHWM when LOG first matches
# BEFORE_PATTERN (in $before) and when it matches AFTER_PATTERN (in $after, the line in $line),
# then stops it.
run() {
  local log=$1 first=$2 last=$3
  shift 3
  "$@" >"$log" 2>&1 &
  local pid=$! i
  before="" after=""
  for ((i = 0; i < 36000; ++i)); do
    [[ -z $before ]] && grep -q "$first" "$log" && before=$(peak_mib "$pid")
    if grep -q "$last" "$log"; then
      after=$(peak_mib "$pid")
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  # SIGKILL to the ranks: trident-train takes SIGTERM as a preemption notice (it would finish
  # its step and write another checkpoint); mpirun then ends on its own.
  # shellcheck disable=SC2046
  kill -KILL $(rank_pids "$pid") 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  line=$(grep "$last" "$log") || { cat "$log"; echo "no '$last' line" >&2; exit 1; }
}

json_list() { echo "[${1// /, }]"; }

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
rows=()
printf '%-12s %5s %-9s %8s %8s %s\n' model ranks writer save_s load_s "VmHWM MiB per rank: step -> save | load"
for model in $MODELS; do
  for spec in $LAYOUTS; do
    np=${spec%%:*}
    flags=${spec#*:}
    flags=${flags//=/ }
    flags=${flags//,/ }
    for writer in $WRITERS; do
      bin=$NEW_BIN
      [[ $writer == rank0 ]] && bin=$OLD_BIN
      dir="$WORK/${model}_np${np}_$writer"
      rm -rf "$dir"
      launcher=()
      [[ $np -gt 1 ]] && launcher=("${MPIRUN[@]}" -np "$np")
      # shellcheck disable=SC2086
      run "$dir.save.log" "^step     1/1" "^checkpoint written" "${launcher[@]}" "$bin" \
        --model "$model" "${ARGS[@]}" $flags --checkpoint-dir "$dir/ck" --out-dir "$dir"
      save=$line step_mib=$before save_mib=$after
      save_s=$(sed -n 's/.* in \([0-9.]*\) s.*/\1/p' <<<"$save")
      bytes=$(stat -c %s "$dir/ck/step_00000001.h5")
      # shellcheck disable=SC2086
      run "$dir.load.log" "^resumed from" "^resumed from" "${launcher[@]}" "$bin" \
        --model "$model" "${ARGS[@]}" --steps 2 $flags \
        --resume-from "$dir/ck/step_00000001.h5" --out-dir "$dir/resumed"
      load=$line load_mib=$after
      load_s=$(sed -n 's/.* at step 1 in \([0-9.]*\) s.*/\1/p' <<<"$load")
      printf '%-12s %5s %-9s %8s %8s %s -> %s | %s\n' "$model" "$np" "$writer" "$save_s" "$load_s" \
        "$step_mib" "$save_mib" "$load_mib"
      rows+=("{\"model\": \"$model\", \"ranks\": $np, \"flags\": \"$flags\", \"writer\": \"$writer\", \"save_s\": $save_s, \"load_s\": $load_s, \"file_bytes\": $bytes, \"vmhwm_mib_after_step\": $(json_list "$step_mib"), \"vmhwm_mib_after_save\": $(json_list "$save_mib"), \"vmhwm_mib_after_load\": $(json_list "$load_mib")}")
      rm -rf "$dir"
    done
  done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p bench/results
out="bench/results/checkpoint_parallel-$(date -u +%Y-%m-%d)-${MODELS// /-}.json"
{
  echo "{"
  echo "  \"benchmark\": \"checkpoint save/load with AdamW state, CPU: parallel HDF5 writer vs rank-0 gather ($OLD_COMMIT)\","
  echo "  \"date\": \"$START\","
  echo "  \"machine\": \"$(uname -n), $(nproc --all) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/^Mem/ {print $2}') GiB; 4 and 8 ranks oversubscribed\","
  echo "  \"hdf5\": \"$(dpkg-query -W -f='${Version}' libhdf5-openmpi-dev 2>/dev/null) (openmpi) / serial for rank0\","
  echo "  \"load_average_before\": \"$LOAD_BEFORE\", \"load_average_after\": \"$LOAD_AFTER\","
  echo "  \"command\": \"MODELS='$MODELS' LAYOUTS='$LAYOUTS' WRITERS='$WRITERS' bench/checkpoint_parallel.sh\","
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
