#!/usr/bin/env bash
# check_table.sh PLANNER ARGS...: the planner's table must list feasible layouts numbered 1, 2,
# ... with non-decreasing step times, name the layouts that do not divide gpt2's vocabulary,
# and end with a "best:" line matching row 1.
set -uo pipefail
out=$("$@") || { echo "planner failed: $*"; exit 1; }
echo "$out"
echo "$out" | awk '
  /^rank +dp +tp +pp +m +b +zero +step ms/ { header = 1; next }
  header && /^ *[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+ / {
    n++
    if ($1 != n) { print "FAIL: row " n " is numbered " $1; bad = 1 }
    if (n > 1 && $8 + 0 < prev) { print "FAIL: step " $8 " ms after " prev " ms"; bad = 1 }
    prev = $8 + 0
    if (n == 1) first = $8
    next
  }
  /does not divide the vocabulary of 50257 tokens/ { vocab = 1 }
  /^best: / { best = $0 }
  END {
    if (!header) { print "FAIL: no table header"; exit 1 }
    if (n < 5) { print "FAIL: only " n " ranked rows"; exit 1 }
    if (!vocab) { print "FAIL: no vocabulary reason among the infeasible layouts"; exit 1 }
    if (index(best, sprintf("%s ms/step", first)) == 0) { print "FAIL: best line does not match row 1: " best; exit 1 }
    if (bad) exit 1
    print "ok: " n " ranked rows"
  }'
