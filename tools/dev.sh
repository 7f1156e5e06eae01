#!/usr/bin/env bash
# Trident's one-command entry points on a fresh Debian 12 machine:
#   bash tools/dev.sh deps    install missing Debian packages (idempotent)
#   bash tools/dev.sh build   deps + configure + build (build/release when nvcc exists, else build/cpu)
#   bash tools/dev.sh train   build + run the default training job (tiny GPT, CPU, built-in data)
#   bash tools/dev.sh test    build + the whole test suite through ctest, then the CUDA path on
#                             the CPU emulation (build/cuda-emu, ASan + UBSan, ctest -L cuda-emu),
#                             the unit and multi-rank tests again under ASan + UBSan (the same
#                             build) and the threaded ones under ThreadSanitizer (build/tsan)
#   bash tools/dev.sh emu     only the emulated-CUDA build and its tests (args go to ctest)
#   bash tools/dev.sh sanitize  only the ASan + UBSan and TSan runs of the unit and MPI tests
# Environment: TRIDENT_PRESET (default: release when nvcc is found, else cpu), JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(cmake ninja-build g++ pkg-config libeigen3-dev libcli11-dev catch2 libhdf5-dev
          libopenmpi-dev openmpi-bin nlohmann-json3-dev
          libhdf5-openmpi-dev hdf5-tools  # parallel HDF5 checkpoints (MPI-IO); h5dump, h5diff
          slurm-wlm munge  # tests/slurm: a real one-node Slurm
          shellcheck clang-format  # tests/lint: lint.shellcheck, lint.format
          libboost-context-dev)  # fibers of the CUDA emulation (kernels/cuda/emu)

deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "dev.sh: installing ${missing[*]}"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# CI (CI=true) builds Trident's libraries with -Werror (TRIDENT_WERROR); a user's build warns.
werror() { if [[ ${CI:-} == true ]]; then echo ON; else echo OFF; fi; }

preset() {
  if [[ -n "${TRIDENT_PRESET:-}" ]]; then echo "$TRIDENT_PRESET"; return; fi
  if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then echo release; else echo cpu; fi
}

build() {
  deps
  local p; p=$(preset)
  [[ -x /usr/local/cuda/bin/nvcc ]] && export PATH="/usr/local/cuda/bin:$PATH"
  # CMakePresets.json's presets (binaryDir build/<preset>); release asks for CUDA outright, so a
  # machine with nvcc and a broken toolkit fails here instead of building for the CPU only.
  local extra=()
  [[ $p == release ]] && extra+=(-DTRIDENT_ENABLE_CUDA=ON)
  # CI compiles the CUDA kernels for sm_80 only (the same source as sm_90, half the nvcc time).
  [[ $p == release && ${CI:-} == true ]] && extra+=(-DCMAKE_CUDA_ARCHITECTURES=80)
  cmake --preset "$p" -DTRIDENT_WERROR="$(werror)" "${extra[@]}" >/dev/null
  cmake --build --preset "$p" -j "${JOBS:-$(nproc)}"
}

# The CUDA backend compiled as C++ against kernels/cuda/emu, with AddressSanitizer and
# UndefinedBehaviorSanitizer: every device allocation and shared-memory variable is bounded
# (the cuda-emu preset: build/cuda-emu, -fsanitize=address,undefined).
emu_build() {
  deps
  cmake --preset cuda-emu -DTRIDENT_WERROR="$(werror)" >/dev/null
  cmake --build --preset cuda-emu -j "${JOBS:-$(nproc)}"
}

sanitizer_env() {
  # UBSan findings stop the test. ASan checks bounds and use after free; leak checking is off:
  # Open MPI (no frame pointers) keeps memory until exit and LeakSanitizer's fast unwinder cannot
  # attribute it, so every MPI program would report "leaks" (the slow unwinder costs too much).
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0"
}

emu_test() {
  emu_build
  mpi_env
  sanitizer_env
  run_ctest build/cuda-emu -L cuda-emu "$@"
}

# The emulated build compiles every library and test with ASan + UBSan, so the unit and
# multi-rank tests run there a second time at no extra build cost (each kernel case once: the
# whole-binary reruns at other thread counts and CPU levels stay in the main build, for time).
asan_test() {
  emu_build
  mpi_env
  sanitizer_env
  run_ctest build/cuda-emu -L '^(unit|mpi)$' -LE cuda-emu -E '^kernels\.all_cases_'
}

# ThreadSanitizer over the code that runs threads of its own: the MPI communicator's progress
# thread (asynchronous collectives, ordering, watchdog), the data-parallel reducer's bucket
# hooks and completion clock (overlapped all-reduce, ZeRO-1), the trace recorder's per-thread
# tracks. OpenMP stays at one thread (libgomp is not instrumented); tests/tsan.supp silences
# only Open MPI's own uninstrumented libraries.
TSAN_TARGETS=(trident_mpi_tests trident_mpi_dp_tests trident_trace_tests)
tsan_test() {
  deps
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j "${JOBS:-$(nproc)}" --target "${TSAN_TARGETS[@]}"
  mpi_env
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0:suppressions=$PWD/tests/tsan.supp"
  local t=build/tsan/tests rc=0
  local mpirun=(mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none
    -x TSAN_OPTIONS -x OMP_NUM_THREADS=1)
  echo "tsan: collectives and runtime on 2 ranks, data parallel on 2, trace recorder"
  "${mpirun[@]}" -np 2 "$t/mpi/trident_mpi_tests" -# "[#test_collectives],[#test_runtime]" || rc=1
  "${mpirun[@]}" -np 2 "$t/mpi/trident_mpi_dp_tests" "~[np4]" || rc=1
  OMP_NUM_THREADS=1 "$t/trace/trident_trace_tests" || rc=1
  ((rc == 0)) && echo "tsan: no data race reported" || echo "tsan: FAILED (see the reports above)" >&2
  return "$rc"
}

# ctest with its output kept; lists the skipped tests. Under CI=true a skipped test fails the run
# unless it needs a real GPU (label gpu, in a build without the emulation, when this
# machine has none): every other skip (GPT-2 files, Slurm, shellcheck) means CI lost a check.
run_ctest() {
  local dir=$1
  shift
  local log rc=0
  log=$(mktemp)
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "${JOBS:-2}" "$@" 2>&1 |
    tee "$log" || rc=$?
  local skipped
  skipped=$(grep -E '^\s*[0-9]+ - .* \(Skipped\)$' "$log" | sed -E 's/^\s*[0-9]+ - (.*) \(Skipped\)$/\1/' || true)
  rm -f "$log"
  if [[ -n $skipped ]]; then
    echo "skipped in $dir:"
    while read -r t; do echo "  $t"; done <<<"$skipped"
    if [[ ${CI:-} == true ]]; then
      # A test labelled gpu may skip (exit 77: no usable GPU) outside the emulated build.
      local must gpu_tests
      gpu_tests=$(ctest --test-dir "$dir" -N -L '^gpu$' | sed -nE 's/^ *Test +#[0-9]+: (.*)$/\1/p')
      must=$(grep -vxF -f <(printf '%s\n' "$gpu_tests") <<<"$skipped" || true)
      if [[ -n $must ]] || [[ $dir == build/cuda-emu && -n $skipped ]]; then
        echo "CI: these tests must run here and were skipped:" >&2
        while read -r t; do echo "  $t" >&2; done <<<"${must:-$skipped}"
        rc=1
      fi
    fi
  fi
  return "$rc"
}

mpi_env() {
  # Open MPI refuses root and more ranks than cores unless told; both are normal here.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  export OMPI_MCA_rmaps_base_oversubscribe=1
}

cmd=${1:-}
shift || true
case "$cmd" in
  deps) deps ;;
  build) build ;;
  train)
    build
    p=$(preset)
    exec "build/$p/examples/trident-train" "$@"
    ;;
  test)
    build
    mpi_env
    p=$(preset)
    rc=0
    run_ctest "build/$p" "$@" || rc=$?
    emu_test || rc=$?
    asan_test || rc=$?
    tsan_test || rc=$?
    exit "$rc"
    ;;
  emu) emu_test "$@" ;;
  sanitize)
    rc=0
    asan_test || rc=$?
    tsan_test || rc=$?
    exit "$rc"
    ;;
  *)
    echo "usage: bash tools/dev.sh deps|build|train|test|emu|sanitize [args...]" >&2
    exit 2
    ;;
esac
