#!/usr/bin/env bash
# check_labels.sh BUILD_DIR README: every ctest entry of BUILD_DIR carries at least one label,
# every label in use is one of the project's labels, and README lists each of them (as `label`).
# Exit 1 with the offenders otherwise. Run as the ctest entry labels.every_test_labelled.
set -euo pipefail
build=$1 readme=$2
# The project's labels; README's Tests section describes each.
known=(unit mpi cli io slurm package gpu cuda-emu slow checkpoint lint)
json=$(mktemp)
trap 'rm -f "$json"' EXIT
ctest --test-dir "$build" -N --show-only=json-v1 > "$json"
python3 - "$json" "$readme" "${known[@]}" <<'EOF'
import json, re, sys
tests = json.load(open(sys.argv[1]))["tests"]
readme = open(sys.argv[2], encoding="utf-8").read()
known = set(sys.argv[3:])
bad = [] if tests else ["no tests found"]
used = set()
for t in tests:
    labels = []
    for p in t.get("properties", []):
        if p["name"] == "LABELS":
            labels = p["value"]
    used.update(labels)
    if not labels:
        bad.append(f"{t['name']}: no label")
    for l in labels:
        if l not in known:
            bad.append(f"{t['name']}: label '{l}' is not one of: {' '.join(sorted(known))}")
for l in sorted(known):
    if f"`{l}`" not in readme:
        bad.append(f"README does not list the label `{l}`")
for b in bad:
    print(b)
print(f"{len(tests)} tests, labels in use: {' '.join(sorted(used))}; {len(bad)} problem(s)")
sys.exit(1 if bad else 0)
EOF
