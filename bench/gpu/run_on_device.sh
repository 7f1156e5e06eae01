#!/usr/bin/env bash
# The GPU benchmark in ONE call of the device tool (at most 10 minutes): build Trident with CUDA
# (sm_90 only), run `ctest -L gpu`, then measure against PyTorch on the same GPU and write
# $OUT/gpu-<date>.json (bench/results/gpu-<date>.json when OUT is unset) plus a log archive.
# See bench/gpu/README.md for how to call it; in short, after `bash bench/gpu/prepare_deps.sh`:
#     run  command: bash bench/gpu/run_on_device.sh   carry: [".gpu-deps"]
#
# Stages, in order of priority, each under `timeout` within one overall budget (BUDGET_S,
# default 540 s): a stage that fails or runs out of time is recorded (stages.tsv) and the run
# goes on; the results are assembled on exit whatever happened.
#   deps, configure, build   .gpu-deps/deps.tar.xz (MPI, HDF5, header libraries), NCCL from
#                            PyTorch's wheel or the CUDA toolkit, build-gpu/ with ninja
#   ctest_gpu_comm, ctest_gpu  ctest -L gpu with CUDA_LAUNCH_BLOCKING=1: the communication
#                            tests, then the others (TRIDENT_REQUIRE_GPU=1: a skip fails)
#   memcheck, racecheck      compute-sanitizer on the kernel tests ([ops])
#   trident_gpt2, torch_gpt2 GPT-2 124M, B=8 T=1024, bf16: trident-train vs torch_gpt2_step.py
#   trident_gpt2-medium, torch_gpt2-medium   the same for GPT-2 350M
#   torch_kernels            torch.matmul 8192^3 bf16, 1 GiB device copy, SDPA attention (default,
#                            then held to the flash and to the cuDNN backend),
#                            torch's memory-bound kernels (bench/gpu/torch_kernels.py)
#   kernel_bench             trident-bench-gpu-kernels: attention, memory-bound GB/s (incl. the
#                            fused residual + layernorm), per-op breakdown of one GPT-2 124M step
#                            (CUDA events)
#   cost_model               trident-planner --kernels --json: the predicted per-family times the
#                            breakdown is set against (assemble_results.py, "vs_cost_model")
#   ncu (NCU=1 only)         ncu --print-summary per-kernel over two trident-train steps
# Environment: BUDGET_S, STEPS (timed steps per model, default 12), TORCH_COMPILE=1 (also time
# torch.compile), NCU=1, JOBS (build parallelism, default: all cores).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
T0=$(date +%s)
BUDGET_S="${BUDGET_S:-540}"
STEPS="${STEPS:-12}"
JOBS="${JOBS:-$(nproc)}"
DATE="$(date -u +%Y-%m-%d)"
RESULTS="${OUT:-$ROOT/bench/results}"
WORK=/tmp/trident-gpu-bench
RAW="$WORK/raw"
LOGS="$WORK/logs"
BUILD="$ROOT/build-gpu"
rm -rf "$WORK"
mkdir -p "$RAW" "$LOGS" "$RESULTS"

elapsed() { echo $(($(date +%s) - T0)); }

# stage NAME CAP_SECONDS COMMAND...: runs COMMAND under timeout (the cap, or what is left of the
# budget less 30 s for the assembly), output to $LOGS/NAME.log; records NAME, status, seconds.
stage() {
  local name="$1" cap="$2"
  shift 2
  local left=$((BUDGET_S - $(elapsed) - 30))
  local limit=$((cap < left ? cap : left))
  if ((limit < 10)); then
    printf '%s\tskipped: out of time\t0\t%s\n' "$name" "$*" >>"$RAW/stages.tsv"
    echo "[$(elapsed) s] $name: skipped (out of time)"
    return 99
  fi
  local start rc status
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="timeout after ${limit} s" ;;
    *) status="failed (exit $rc)" ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(($(date +%s) - start))" "$*" >>"$RAW/stages.tsv"
  echo "[$(elapsed) s] $name: $status"
  [[ $rc -ne 0 ]] && tail -n 5 "$LOGS/$name.log" | sed 's/^/    /'
  return $rc
}

# shellcheck disable=SC2317  # runs from the EXIT trap
assemble() {
  local out="$RESULTS/gpu-$DATE.json"
  [[ -e "$out" && -z "${OUT:-}" ]] && out="$RESULTS/gpu-$(date -u +%Y-%m-%dT%H%M%S).json"
  python3 "$ROOT/bench/gpu/assemble_results.py" --raw "$RAW" --out "$out" ||
    echo "assemble_results.py failed; raw files are in the log archive"
  tar -C "$WORK" -czf "$RESULTS/gpu-logs-$DATE.tar.gz" raw logs 2>/dev/null
  echo "[$(elapsed) s] done: $out, $RESULTS/gpu-logs-$DATE.tar.gz"
}
trap assemble EXIT

# --- what machine ------------------------------------------------------------------------------
GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
python3 - "$RAW/info.json" "$GPU_NAME" <<'EOF'
import json, subprocess, sys, datetime, os
def run(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:
        return f"unavailable: {e}"
info = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "gpu_name": sys.argv[2],
    "nvidia_smi": run("nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,"
                      "clocks.max.mem,power.limit --format=csv"),
    "nvcc": run("nvcc --version | tail -n 2"),
    "cmake": run("cmake --version | head -n 1"),
    "torch": run("python3 -c 'import torch; print(torch.__version__, torch.version.cuda)'"),
    "cpu": run("lscpu | grep 'Model name' | cut -d: -f2").strip(),
    "cores": os.cpu_count(),
    "trident_commit": run("git describe --always --dirty 2>/dev/null") or "unknown (no .git)",
    "deps": run("cat /tmp/trident-deps/usr/TRIDENT_DEPS_VERSIONS 2>/dev/null"),
}
json.dump(info, open(sys.argv[1], "w"), indent=2)
EOF
echo "[$(elapsed) s] ${GPU_NAME:-no GPU found by nvidia-smi}; budget ${BUDGET_S} s"

# --- dependencies --------------------------------------------------------------------------------
D=/tmp/trident-deps/usr
if [[ -f .gpu-deps/deps.tar.xz ]]; then
  mkdir -p /tmp/trident-deps && tar -C /tmp/trident-deps -xJf .gpu-deps/deps.tar.xz
else
  echo "no .gpu-deps/deps.tar.xz: run bench/gpu/prepare_deps.sh here and carry .gpu-deps"
fi
CMAKE_DEPS=()
RUN_LD=""
if [[ -d "$D" ]]; then
  A="$D/lib/x86_64-linux-gnu"
  # Open MPI and PMIx from the bundle, relocated; their libraries only for Trident's programs
  # (the bundle's older libraries must not shadow the compiler's).
  export OPAL_PREFIX="$D" PMIX_INSTALL_PREFIX="$A/pmix2" PATH="$PATH:$D/bin"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  RUN_LD="$D/lib/trident-deps:$A/openmpi/lib:$A:$A/hdf5/serial"
  LINK="-Wl,-rpath-link,$D/lib/trident-deps:$A/openmpi/lib:$A"
  CMAKE_DEPS=(
    -DCMAKE_PREFIX_PATH="$D"
    -DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_CXX_SKIP_MPICXX=ON
    -DMPI_C_HEADER_DIR="$A/openmpi/include" -DMPI_CXX_HEADER_DIR="$A/openmpi/include"
    -DMPI_C_LIB_NAMES=mpi -DMPI_CXX_LIB_NAMES=mpi -DMPI_mpi_LIBRARY="$A/openmpi/lib/libmpi.so"
    -DMPIEXEC_EXECUTABLE="$D/bin/mpirun"
    -DHDF5_ROOT="$D" -DHDF5_C_INCLUDE_DIR="$D/include/hdf5/serial"
    -DHDF5_C_LIBRARY_hdf5="$A/hdf5/serial/libhdf5.so"
    -DHDF5_hdf5_LIBRARY_RELEASE="$A/hdf5/serial/libhdf5.so"
    -DCMAKE_EXE_LINKER_FLAGS="$LINK" -DCMAKE_SHARED_LINKER_FLAGS="$LINK"
  )
fi
# NCCL: the CUDA toolkit's, else PyTorch's wheel (nvidia-nccl-cu13).
NCCL_ROOT="$(python3 -c 'import nvidia.nccl, os; print(list(nvidia.nccl.__path__)[0])' 2>/dev/null)"
if [[ -n "$NCCL_ROOT" ]]; then
  CMAKE_DEPS+=(-DNCCL_ROOT="$NCCL_ROOT")
  RUN_LD="$RUN_LD:$NCCL_ROOT/lib"
fi
echo "[$(elapsed) s] deps: ${D} ($([[ -d $D ]] && echo unpacked || echo absent)), NCCL_ROOT=${NCCL_ROOT:-cuda toolkit}"
# Prefix for Trident's programs (a command, since `timeout` cannot run shell functions).
RUN=(env "LD_LIBRARY_PATH=$RUN_LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")

# --- build ---------------------------------------------------------------------------------------
stage configure 150 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DTRIDENT_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  "${CMAKE_DEPS[@]}"
TARGETS=(trident-train trident-bench-gpu-kernels trident-planner trident_gpu_comm_tests)
if [[ -f "$BUILD/build.ninja" ]]; then
  # Every test binary that registers gpu-labelled tests (tests/gpu, tests/gpu_comm).
  while read -r t; do TARGETS+=("$t"); done < <(ninja -C "$BUILD" -t targets all 2>/dev/null |
    grep -oE '^trident_gpu[a-z_]*tests' | sort -u)
fi
stage build 300 cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" ||
  stage build_retry_keep_going 120 ninja -C "$BUILD" -k 0 "${TARGETS[@]}"
grep -E 'warning:' "$LOGS/build.log" | sort -u >"$RAW/build_warnings.txt"
echo "[$(elapsed) s] build warnings: $(wc -l <"$RAW/build_warnings.txt")"

# --- tests ---------------------------------------------------------------------------------------
# The communication tests first (NCCL on one rank, MPI staging on 1 and 2 ranks), then the rest,
# with launches synchronous so that a failing kernel is named. TRIDENT_REQUIRE_GPU: a skip fails.
export TRIDENT_REQUIRE_GPU=1
stage ctest_gpu_comm 90 "${RUN[@]}" CUDA_LAUNCH_BLOCKING=1 ctest --test-dir "$BUILD" -L gpu \
  -R '^gpu_comm' --output-on-failure
stage ctest_gpu 150 "${RUN[@]}" CUDA_LAUNCH_BLOCKING=1 ctest --test-dir "$BUILD" -L gpu \
  -E '^gpu_comm' --output-on-failure --timeout 120
# compute-sanitizer on the kernel tests (every backend op on CUDA against the CPU): out-of-bounds
# and misaligned accesses (memcheck), shared-memory races between threads (racecheck).
GPU_TESTS="$BUILD/tests/gpu/trident_gpu_tests"
if command -v compute-sanitizer >/dev/null && [[ -x "$GPU_TESTS" ]]; then
  stage memcheck 90 "${RUN[@]}" compute-sanitizer --tool memcheck --error-exitcode 3 \
    "$GPU_TESTS" "[ops]"
  stage racecheck 90 "${RUN[@]}" compute-sanitizer --tool racecheck --racecheck-report hazard \
    --error-exitcode 3 "$GPU_TESTS" "[ops]"
else
  printf 'sanitizers\tmissing: compute-sanitizer or %s\t0\t\n' "$GPU_TESTS" >>"$RAW/stages.tsv"
fi

export PYTHONUNBUFFERED=1
# --- GPT-2 training steps ------------------------------------------------------------------------
TRAIN="$BUILD/examples/trident-train"
for model in gpt2 gpt2-medium; do
  cap=$([[ $model == gpt2 ]] && echo 100 || echo 130)
  mkdir -p "$RAW/train_$model"
  if [[ -x "$TRAIN" ]]; then
    # Flags the trainer documents: bf16 compute with fp32 master weights on the GPU. The first 3
    # steps are not counted (assemble_results.py).
    stage "trident_$model" "$cap" "${RUN[@]}" "$TRAIN" --device cuda --precision bf16 \
      --model "$model" --batch 8 --seq 1024 --steps $((STEPS + 3)) --warmup 2 \
      --log-interval 5 --out-dir "$RAW/train_$model"
  else
    printf 'trident_%s\tmissing: %s not built\t0\t\n' "$model" "$TRAIN" >>"$RAW/stages.tsv"
  fi
  profile=$([[ $model == gpt2 ]] && echo "--profile 25" || echo "")
  stage "torch_$model" 80 sh -c "python3 bench/gpu/torch_gpt2_step.py --model $model --batch 8 \
    --seq 1024 --steps $STEPS --warmup-steps 3 $profile > '$RAW/torch_$model.json'"
  if [[ "${TORCH_COMPILE:-0}" == 1 ]]; then
    stage "torch_${model}_compile" 150 sh -c "python3 bench/gpu/torch_gpt2_step.py --model $model \
      --batch 8 --seq 1024 --steps $STEPS --warmup-steps 3 --compile > '$RAW/torch_${model}_compile.json'"
  fi
done

# --- references and kernels ----------------------------------------------------------------------
stage torch_kernels 90 sh -c "python3 bench/gpu/torch_kernels.py > '$RAW/torch_kernels.json'"
BENCH="$BUILD/bench/trident-bench-gpu-kernels"
if [[ -x "$BENCH" ]]; then
  stage kernel_bench 120 "${RUN[@]}" "$BENCH" --out "$RAW/kernel_bench.json"
else
  printf 'kernel_bench\tmissing: %s not built\t0\t\n' "$BENCH" >>"$RAW/stages.tsv"
fi

PLANNER="$BUILD/tools/trident-planner"
if [[ -x "$PLANNER" ]]; then
  stage cost_model 20 sh -c "'$PLANNER' --kernels --model gpt2 --json > '$RAW/kernel_cost_model.json'"
else
  printf 'cost_model\tmissing: %s not built\t0\t\n' "$PLANNER" >>"$RAW/stages.tsv"
fi

# --- per-kernel profile of the real step (optional: ncu replays every kernel) --------------------
if [[ "${NCU:-0}" == 1 && -x "$TRAIN" ]] && command -v ncu >/dev/null; then
  stage ncu 150 "${RUN[@]}" ncu --print-summary per-kernel --metrics gpu__time_duration.sum \
    "$TRAIN" --device cuda --precision bf16 --model gpt2 --batch 8 --seq 1024 --steps 2 \
    --out-dir "$WORK/ncu_run"
  cp "$LOGS/ncu.log" "$RAW/ncu_summary.txt" 2>/dev/null
fi
exit 0
