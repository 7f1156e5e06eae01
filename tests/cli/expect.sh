#!/usr/bin/env bash
# expect.sh fail|ok REGEX -- COMMAND...
# fail: COMMAND must exit non-zero, print REGEX on stderr, and die cleanly (no abort, no core
#       dump, no "terminate called", exactly one error line).
# fail-job: as fail for an mpirun job: REGEX appears exactly once (one rank reports), the job
#       exits non-zero, nobody aborts or dumps core (mpirun's own summary lines are allowed).
# ok:   COMMAND must exit 0 and print REGEX on stdout.
set -uo pipefail
want=$1 regex=$2
shift 3
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$@" >"$out" 2>"$err"
rc=$?
if [[ $want == fail-job ]]; then
  if ((rc == 0)); then echo "expected failure, got exit 0"; cat "$out" "$err"; exit 1; fi
  if grep -qE "terminate called|core dumped|Segmentation|MPI_ABORT" "$err" "$out"; then
    echo "unclean exit:"; cat "$err"; exit 1
  fi
  n=$(cat "$out" "$err" | grep -cE -- "$regex")
  if ((n != 1)); then echo "expected /$regex/ once, got $n:"; cat "$out" "$err"; exit 1; fi
  echo "ok: exit $rc, $(cat "$out" "$err" | grep -E -- "$regex")"
elif [[ $want == fail ]]; then
  if ((rc == 0)); then echo "expected failure, got exit 0"; cat "$out" "$err"; exit 1; fi
  if ((rc >= 128)); then echo "died by signal (exit $rc)"; cat "$err"; exit 1; fi
  if grep -qE "terminate called|Aborted|core dumped|Segmentation" "$err"; then
    echo "unclean exit:"; cat "$err"; exit 1
  fi
  if ! grep -qE -- "$regex" "$err"; then echo "stderr lacks /$regex/:"; cat "$err"; exit 1; fi
  lines=$(grep -cvE '^\s*$|^Run with --help' "$err")
  if ((lines != 1)); then echo "expected one error line, got $lines:"; cat "$err"; exit 1; fi
  echo "ok: exit $rc, $(head -n1 "$err")"
else
  if ((rc != 0)); then echo "expected success, got exit $rc"; cat "$out" "$err"; exit 1; fi
  if ! grep -qE -- "$regex" "$out"; then echo "stdout lacks /$regex/:"; cat "$out"; exit 1; fi
  echo "ok: $(grep -E -- "$regex" "$out" | head -n1)"
fi
