#!/usr/bin/env bash
# Runs a job that must fail: passes when it exits non-zero within SECONDS and its stderr
# matches every PATTERN (grep -E). Prints the job's output either way.
# usage: expect_job_failure.sh SECONDS PATTERN... -- COMMAND...
set -u
limit=$1
shift
patterns=()
while [[ $# -gt 0 && $1 != -- ]]; do
  patterns+=("$1")
  shift
done
shift
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
start=$(date +%s)
# SIGTERM first (mpirun then kills its ranks); 124 means the limit was hit. mpirun itself
# exits 137 when a rank was killed by SIGKILL.
timeout -k 10 "$limit" "$@" >"$out" 2>"$err"
status=$?
elapsed=$(($(date +%s) - start))
echo "--- stdout"; cat "$out"
echo "--- stderr"; cat "$err"
echo "--- exit status $status after ${elapsed}s"
failed=0
if [[ $status -eq 0 ]]; then
  echo "FAIL: the job exited 0"
  failed=1
fi
if [[ $status -eq 124 ]] || (( elapsed >= limit )); then
  echo "FAIL: the job did not end within ${limit}s"
  failed=1
fi
for p in "${patterns[@]}"; do
  if ! grep -Eq -- "$p" "$err"; then
    echo "FAIL: stderr does not match /$p/"
    failed=1
  fi
done
[[ $failed -eq 0 ]] && echo "PASS: the job failed as expected"
exit $failed
