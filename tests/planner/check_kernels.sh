#!/usr/bin/env bash
# check_kernels.sh PLANNER: trident-planner --kernels for GPT-2 124M, B 8 x T 1024. The text
# says PREDICTION and prints both GPUs' step lines; the JSON lists, for the current and the
# planned implementation, kernels with positive launches and time, matmul FLOPs within 5% of
# 6 x parameters x tokens (forward, dX and dW), a planned step faster than the current one, and
# an MFU between 0 and 1 consistent with the step time.
set -euo pipefail
PLANNER=$1
text=$("$PLANNER" --kernels --model gpt2)
grep -q "PREDICTION" <<<"$text" || { echo "no PREDICTION label"; exit 1; }
grep -q "predicted step on H100 SXM" <<<"$text" || { echo "no H100 step line"; exit 1; }
grep -q "predicted step on H200" <<<"$text" || { echo "no H200 step line"; exit 1; }
"$PLANNER" --kernels --model gpt2 --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert "PREDICTION" in d["label"]
assert d["batch"] == 8 and d["seq"] == 1024, (d["batch"], d["seq"])
N, tokens = d["model"]["parameters"], d["batch"] * d["seq"]
impl = d["implementations"]
assert set(impl) == {"current", "planned"}, set(impl)
for name, im in impl.items():
    ks = im["kernels"]
    assert len(ks) >= 10, (name, len(ks))
    for k in ks:
        assert k["launches"] > 0 and k["mb"] > 0, (name, k["kernel"])
        assert all(v > 0 for v in k["ms"].values()), (name, k["kernel"], k["ms"])
    mm = sum(k["gflop"] for k in ks if k["matmul"]) * 1e9
    ratio = mm / (6.0 * N * tokens)
    assert abs(ratio - 1) < 0.05, (name, "matmul FLOPs / 6 N tokens", ratio)
    phases = {k["phase"] for k in ks}
    assert phases == {"forward", "backward", "optimizer"}, phases
    for gpu, s in im["step"].items():
        assert 0 < s["mfu"] < 1, (name, gpu, s["mfu"])
        total = sum(k["ms"][gpu] for k in ks)
        assert abs(total - s["step_ms"]) < 1e-6 * total, (name, gpu, total, s["step_ms"])
for gpu in impl["current"]["step"]:
    c, p = impl["current"]["step"][gpu]["step_ms"], impl["planned"]["step"][gpu]["step_ms"]
    assert c > p, (gpu, "current", c, "not slower than planned", p)
h100, h200 = (impl["planned"]["step"][g]["step_ms"] for g in ("H100 SXM", "H200"))
assert h200 <= h100, (h200, h100)  # same compute, more bandwidth
print("ok:", {n: {g: round(s["step_ms"], 2) for g, s in im["step"].items()} for n, im in impl.items()})
'
