#!/usr/bin/env bash
# gpu_or_skip.sh PROBE -- COMMAND...: runs COMMAND when `PROBE --probe-gpu` finds a CUDA device
# (exit 0). When the probe skips (77: this machine has no GPU) it exits 77, ctest's
# SKIP_RETURN_CODE, so an mpirun test is reported skipped, never passed; TRIDENT_REQUIRE_GPU=1
# turns that into a failure. Any other probe result (a CUDA error, a missing library, a crash)
# is a failure with the probe's exit status, never a skip.
set -u
probe="$1"
shift
[[ "${1:-}" == "--" ]] && shift
"$probe" --probe-gpu
rc=$?
if ((rc == 77)); then
  if [[ -n "${TRIDENT_REQUIRE_GPU:-}" && "${TRIDENT_REQUIRE_GPU}" != 0 ]]; then
    echo "FAILED: no GPU, and TRIDENT_REQUIRE_GPU=${TRIDENT_REQUIRE_GPU} forbids skipping" >&2
    exit 1
  fi
  exit 77
fi
if ((rc != 0)); then
  echo "FAILED: the GPU probe $probe exited with status $rc" >&2
  exit "$rc"
fi
exec "$@"
