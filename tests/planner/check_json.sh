#!/usr/bin/env bash
# check_json.sh PLANNER ARGS... --json: valid JSON whose feasible layouts are ranked by step
# time and fit the GPU's memory, and whose infeasible ones carry a reason.
set -uo pipefail
"$@" | python3 -c '
import json, sys
d = json.load(sys.stdin)
L = d["layouts"]
feas = [l for l in L if l["feasible"]]
assert len(feas) >= 5, len(feas)
steps = [l["step_ms"] for l in feas]
assert steps == sorted(steps), steps
assert [l["rank"] for l in feas] == list(range(1, len(feas) + 1))
limit = d["machine"]["memory_GB"] * 1e9
assert all(l["memory"]["total_bytes"] <= limit for l in feas)
bad = [l for l in L if not l["feasible"]]
assert bad and all(l["reason"] for l in bad)
assert L.index(feas[-1]) < L.index(bad[0])
print("ok:", len(feas), "feasible,", len(bad), "infeasible, best", feas[0]["layout"], round(steps[0], 1), "ms")
'
