#!/usr/bin/env bash
# gpu_or_skip.sh PROBE -- COMMAND...: runs COMMAND when `PROBE --probe-gpu` finds a CUDA device;
# otherwise prints PROBE's SKIPPED line and exits 77 (ctest's SKIP_RETURN_CODE), so an mpirun
# test is reported skipped, never passed, on a machine without a GPU.
set -u
probe="$1"
shift
[[ "${1:-}" == "--" ]] && shift
"$probe" --probe-gpu
rc=$?
if [[ $rc -ne 0 ]]; then
  exit 77
fi
exec "$@"
