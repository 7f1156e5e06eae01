#!/usr/bin/env bash
# expect_cuda.sh PROBE -- COMMAND...: COMMAND asks for --device cuda. Where `PROBE --probe-gpu`
# finds a GPU (exit 0; the CUDA emulation counts) it must train (exit 0, print its "done" line);
# on a machine without one (77) it must fail with one clear line naming CUDA (expect.sh fail).
# Any other probe result fails the test: it is not known which of the two to expect.
set -u
probe=$1
shift
[[ "${1:-}" == "--" ]] && shift
here=$(dirname "$0")
"$probe" --probe-gpu
rc=$?
case $rc in
  0) exec bash "$here/expect.sh" ok "done in [0-9.]+ s" -- "$@" ;;
  77) exec bash "$here/expect.sh" fail "[Cc][Uu][Dd][Aa]" -- "$@" ;;
  *) echo "the GPU probe $probe failed (exit $rc)"; exit 1 ;;
esac
