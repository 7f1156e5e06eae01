#!/usr/bin/env bash
# The lint checks ctest runs (label lint), from the source root:
#   bash tools/lint.sh format       every C++/CUDA source formatted as .clang-format says
#   bash tools/lint.sh shellcheck   the Slurm templates and test scripts pass shellcheck
# Exit 0 when clean, 1 on findings, 77 (ctest: skipped) when the tool is not installed; under
# CI=true tools/dev.sh fails a run in which a lint test skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tracked files when this is a git checkout, else the same patterns found on disk.
sources() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -- "$@"
  else
    local args=() p
    for p in "$@"; do args+=(-o -path "./$p"); done
    find . -path ./build -prune "${args[@]}" -type f | sed 's|^\./||'
  fi
}

need() {
  local tool
  for tool in "$@"; do
    if command -v "$tool" >/dev/null 2>&1; then
      command -v "$tool"
      return
    fi
  done
  echo "lint: $1 is not installed (bash tools/dev.sh deps installs it)" >&2
  exit 77
}

case "${1:-}" in
  format)
    # Debian 12's clang-format is 14; other versions format some constructs differently.
    cf=$(need clang-format-14 clang-format)
    mapfile -t files < <(sources '*.cpp' '*.hpp' '*.h' '*.cu' '*.cuh')
    if ! "$cf" --dry-run -Werror "${files[@]}"; then
      echo "lint: the files above differ from .clang-format ($("$cf" --version));" \
        "fix with: clang-format -i <file>" >&2
      exit 1
    fi
    echo "lint: ${#files[@]} files formatted ($("$cf" --version))"
    ;;
  shellcheck)
    sc=$(need shellcheck)
    mapfile -t files < <(sources 'slurm/*.sbatch' 'slurm/*.sh' 'tests/slurm/*.sh' \
      'tests/package/*.sh' 'tools/*.sh' 'bench/*.sh' '.ci/run')
    # -x follows `source` lines, resolved from the source root.
    "$sc" -x "${files[@]}"
    echo "lint: shellcheck clean on ${#files[@]} scripts"
    ;;
  *)
    echo "usage: bash tools/lint.sh format|shellcheck" >&2
    exit 2
    ;;
esac
