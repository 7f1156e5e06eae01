#!/usr/bin/env bash
# Trident's one-command entry points on a fresh Debian 12 machine:
#   bash tools/dev.sh deps    install missing Debian packages (idempotent)
#   bash tools/dev.sh build   deps + configure + build (build/release when nvcc exists, else build/cpu)
#   bash tools/dev.sh train   build + run the default training job (tiny GPT, CPU, built-in data)
#   bash tools/dev.sh test    build + the whole test suite through ctest
# Environment: TRIDENT_PRESET (default: release when nvcc is found, else cpu), JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(cmake ninja-build g++ pkg-config libeigen3-dev libcli11-dev catch2 libhdf5-dev
          libopenmpi-dev openmpi-bin nlohmann-json3-dev
          slurm-wlm munge shellcheck)  # tests/slurm: a real one-node Slurm; lint.shellcheck

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

preset() {
  if [[ -n "${TRIDENT_PRESET:-}" ]]; then echo "$TRIDENT_PRESET"; return; fi
  if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then echo release; else echo cpu; fi
}

build() {
  deps
  local p; p=$(preset)
  [[ -x /usr/local/cuda/bin/nvcc ]] && export PATH="/usr/local/cuda/bin:$PATH"
  # The same settings as CMakePresets.json's presets, spelled out: Debian 12's CMake 3.25
  # rejected every presets file we tried ("Invalid preset"), even a minimal one.
  local cuda=OFF
  [[ $p == release ]] && cuda=ON
  cmake -S . -B "build/$p" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTRIDENT_ENABLE_CUDA=$cuda >/dev/null
  cmake --build "build/$p" -j "${JOBS:-$(nproc)}"
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
    ctest --test-dir "build/$p" --output-on-failure -j "${JOBS:-2}" "$@"
    ;;
  *)
    echo "usage: bash tools/dev.sh deps|build|train|test [args...]" >&2
    exit 2
    ;;
esac
