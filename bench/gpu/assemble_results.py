#!/usr/bin/env python3
"""Gathers the raw outputs of bench/gpu/run_on_device.sh into one JSON document and prints a
short table. Standard library only: it runs even when torch or the build failed, and whatever
is absent is recorded as missing.

    python3 bench/gpu/assemble_results.py --raw DIR --out gpu-<date>.json
"""
import argparse
import json
import os
import re
import statistics

# Dense bf16 tensor-core peak (TFLOP/s, no sparsity) by the name nvidia-smi reports; the first
# pattern that matches wins. From NVIDIA's datasheets.
PEAK_BF16_TFLOPS = [
    (r"H100 NVL", "H100 NVL", 835.0),
    (r"H100.*PCIe", "H100 PCIe", 756.0),
    (r"GH200", "GH200", 989.4),
    (r"H200", "H200 SXM", 989.4),
    (r"H100", "H100 SXM (HBM3)", 989.4),
    (r"A100", "A100", 312.0),
    (r"L40S", "L40S", 362.0),
]
PRESETS = {"gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024)}  # layers, heads, width
VOCAB, BLOCK = 50257, 1024
WARMUP_STEPS = 3  # trident-train steps not counted (allocator and cuBLASLt warm-up)


def load_json(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        # A program's stdout may hold log lines before its JSON: take the last JSON line.
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    break
        return json.loads(text)
    except (OSError, json.JSONDecodeError) as e:
        return {"missing": f"{os.path.basename(path)}: {e}"}


def peak_for(name):
    for pattern, sku, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, name or ""):
            return {"sku": sku, "tflops": tflops, "matched": pattern}
    return {"sku": "unknown", "tflops": None, "matched": None}


def gpt2_flops_per_token(model, seq):
    L, _, C = PRESETS[model]
    params = VOCAB * C + BLOCK * C + L * (12 * C * C + 13 * C) + 2 * C
    non_embedding = params - BLOCK * C  # wte counts (it is the lm head too); wpe does not
    return params, 6 * non_embedding + 12 * L * C * seq  # PaLM / nanoGPT estimate


def trident_train_result(run_dir, stages, stage_name):
    st = stages.get(stage_name, {})
    out = {"status": st.get("status", "not run"), "command": st.get("command")}
    rows = []
    try:
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            rows = [json.loads(l) for l in f if l.startswith('{"step"')]
    except (OSError, json.JSONDecodeError) as e:
        out["missing"] = f"no metrics.jsonl ({e}); see the log {stage_name}.log"
        return out
    timed = rows[WARMUP_STEPS:] if len(rows) > WARMUP_STEPS else rows
    if not timed:
        out["missing"] = "trident-train wrote no step"
        return out
    ms = [r["step_ms"] for r in timed]
    out.update({
        "steps_total": len(rows), "steps_timed": len(timed),
        "step_ms_median": statistics.median(ms), "step_ms_min": min(ms),
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
        "loss_last": rows[-1].get("loss"), "peak_mem_bytes": rows[-1].get("peak_mem_bytes"),
    })
    if len(rows) <= WARMUP_STEPS:
        out["note"] = "fewer steps than the warm-up: untimed steps counted"
    return out


def mfu(tokens_per_s, flops_per_token, peak_tflops, matmul_tflops):
    if not tokens_per_s:
        return {}
    achieved = tokens_per_s * flops_per_token / 1e12
    r = {"achieved_tflops": achieved}
    if peak_tflops:
        r["mfu_vs_datasheet_peak"] = achieved / peak_tflops
    if matmul_tflops:
        r["mfu_vs_measured_matmul"] = achieved / matmul_tflops
    return r


def ratio(a, b):
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


# trident-bench-gpu-kernels' breakdown ops by the cost model's kernel families (by name).
# The first key found in an op's name decides ("attention projection forward (matmul)" is a matmul).
FAMILY_OF_OP = (("matmul", "matmul"), ("bias", "matmul"), ("attention", "attention"),
                ("layernorm", "layernorm + residual"), ("residual", "layernorm + residual"),
                ("gelu", "gelu"), ("cross entropy", "cross-entropy"), ("embedding", "embedding"),
                ("adamw", "optimizer"))


def against_cost_model(model, ops_doc, gpu_name):
    """Measured ms per family (sum of the breakdown's ops) beside trident-planner --kernels'
    prediction for the current kernels on the closest GPU (H200 for an H200, else H100 SXM)."""
    impl = ((model.get("implementations") or {}).get("current") or {})
    if not impl or not isinstance(ops_doc, dict) or "ops" not in ops_doc:
        return {"missing": "cost model or breakdown not available"}
    gpu = "H200" if "H200" in (gpu_name or "") else "H100 SXM"
    predicted = {}
    for k in impl.get("kernels", []):
        ms = (k.get("ms") or {}).get(gpu) if isinstance(k.get("ms"), dict) else None
        if ms is not None:
            predicted[k["family"]] = predicted.get(k["family"], 0.0) + ms
    measured = {}
    for op in ops_doc["ops"]:
        fam = next((f for key, f in FAMILY_OF_OP if key in op.get("name", "")), "other")
        if "total_ms" in op:
            measured[fam] = measured.get(fam, 0.0) + op["total_ms"]
    fams = sorted(set(predicted) | set(measured))
    return {"gpu_priced": gpu, "implementation": "current",
            "families": {f: {"predicted_ms": predicted.get(f), "measured_ms": measured.get(f),
                             "ratio_measured_over_predicted":
                                 ratio(measured.get(f), predicted.get(f))} for f in fams},
            "step_predicted_ms": ((impl.get("step") or {}).get(gpu) or {}).get("step_ms"),
            "note": "measured: each op timed alone x its count per step (kernel_bench.cpp); "
                    "the casts, optimizer launches and zeroing the model prices are not all in "
                    "the breakdown"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    raw = args.raw

    stages = {}
    try:
        with open(os.path.join(raw, "stages.tsv")) as f:
            for line in f:
                name, status, secs, cmd = (line.rstrip("\n").split("\t") + ["", "", ""])[:4]
                stages[name] = {"status": status, "seconds": secs, "command": cmd}
    except OSError:
        pass
    info = load_json(os.path.join(raw, "info.json"))
    gpu_name = info.get("gpu_name", "")
    peak = peak_for(gpu_name)
    torch_k = load_json(os.path.join(raw, "torch_kernels.json"))
    trident_k = load_json(os.path.join(raw, "kernel_bench.json"))
    matmul_tflops = (torch_k.get("matmul") or {}).get("tflops")
    copy_torch = (torch_k.get("copy") or {}).get("gb_per_s")
    copy_trident = (trident_k.get("copy") or {}).get("gb_per_s")
    copy_ceiling = copy_torch or copy_trident

    gpt2 = []
    for model in ("gpt2", "gpt2-medium"):
        seq = 1024
        params, fpt = gpt2_flops_per_token(model, seq)
        tri = trident_train_result(os.path.join(raw, f"train_{model}"), stages, f"trident_{model}")
        pt = load_json(os.path.join(raw, f"torch_{model}.json"))
        pt_status = stages.get(f"torch_{model}", {}).get("status", "not run")
        entry = {"model": model, "params": params, "seq": seq, "flops_per_token": fpt,
                 "flops_formula": "6 * (params - wpe) + 12 * layers * width * seq",
                 "trident": tri, "pytorch": dict(pt, status=pt_status)}
        entry["trident"].update(mfu(tri.get("tokens_per_s"), fpt, peak["tflops"], matmul_tflops))
        entry["pytorch"].update(mfu(pt.get("tokens_per_s"), fpt, peak["tflops"], matmul_tflops))
        entry["ratio_trident_over_pytorch_tokens_per_s"] = ratio(tri.get("tokens_per_s"),
                                                                 pt.get("tokens_per_s"))
        gpt2.append(entry)

    attention = []
    t_att = trident_k.get("attention") if isinstance(trident_k.get("attention"), list) else []
    p_att = torch_k.get("attention") if isinstance(torch_k.get("attention"), list) else []
    for T in (1024, 2048):
        t = next((a for a in t_att if a.get("T") == T), {"missing": "not measured"})
        p = next((a for a in p_att if a.get("T") == T), {"missing": "not measured"})
        entry = {"B": 8, "T": T, "NH": 12, "HD": 64, "trident": t, "pytorch_sdpa": p,
                 "ratio_fwd_bwd_time_trident_over_torch":
                     ratio(t.get("fwd_bwd_ms"), p.get("fwd_bwd_ms"))}
        # SDPA held to FlashAttention-2 and to cuDNN's fused attention (torch_kernels.py).
        for name, b in (p.get("backends") or {}).items():
            if isinstance(b, dict):
                entry[f"ratio_fwd_bwd_time_trident_over_{name}"] = ratio(t.get("fwd_bwd_ms"),
                                                                         b.get("fwd_bwd_ms"))
        attention.append(entry)

    memory = {}
    t_mem, p_mem = trident_k.get("memory") or {}, torch_k.get("memory") or {}
    for op in ("layernorm", "residual_layernorm", "gelu", "adamw", "cross_entropy"):
        row = {}
        for impl, src in (("trident", t_mem), ("pytorch", p_mem)):
            d = src.get(op) if isinstance(src, dict) else None
            if not isinstance(d, dict) or "missing" in d:
                row[impl] = d or {"missing": "not measured"}
                continue
            row[impl] = {}
            for direction in ("forward", "backward", "update"):
                if direction in d:
                    gbs = d[direction]["gb_per_s"]
                    row[impl][direction] = {"gb_per_s": gbs, "ms": d[direction]["ms"],
                                            "fraction_of_copy": ratio(gbs, copy_ceiling)}
        memory[op] = row

    breakdown = {"trident_ops": trident_k.get("breakdown", {"missing": "not measured"}),
                 "trident_train_step_ms": gpt2[0]["trident"].get("step_ms_median"),
                 "pytorch_profile": gpt2[0]["pytorch"].get("profile", {"missing": "not profiled"})}
    breakdown["vs_cost_model"] = against_cost_model(
        load_json(os.path.join(raw, "kernel_cost_model.json")), trident_k.get("breakdown"), gpu_name)
    ncu = os.path.join(raw, "ncu_summary.txt")
    if os.path.exists(ncu):
        with open(ncu) as f:
            breakdown["ncu_per_kernel_summary"] = f.read()[-20000:]

    ctest = {}
    for name in ("ctest_gpu_comm", "ctest_gpu"):
        c = ctest[name] = {"status": stages.get(name, {}).get("status", "not run")}
        try:
            with open(os.path.join(raw, "..", "logs", name + ".log")) as f:
                log = f.read()
        except OSError:
            continue
        m = re.search(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", log)
        if m:
            c.update(passed_percent=int(m.group(1)), failed=int(m.group(2)), total=int(m.group(3)))
        c["skipped"] = re.findall(r"^\s*\d+ - (\S+) \(Skipped\)", log, re.M)
        c["failed_tests"] = re.findall(
            r"^\s*\d+ - (\S+) \((?:Failed|Timeout|SEGFAULT|Subprocess aborted|Exception)\)", log, re.M)

    doc = {
        "benchmark": "GPU: GPT-2 training step, attention, memory-bound kernels, step breakdown "
                     "(bench/gpu/run_on_device.sh)",
        "date": info.get("date"), "device": info, "peak_bf16_dense": peak,
        "ceilings": {"matmul_bf16_tflops_measured": matmul_tflops,
                     "copy_gb_per_s_measured_torch": copy_torch,
                     "copy_gb_per_s_measured_trident_binary": copy_trident},
        "ctest_gpu": ctest, "stages": stages, "gpt2_training_step": gpt2,
        "attention": attention, "memory_bound": memory, "breakdown": breakdown,
        "raw": {"torch_kernels": torch_k, "trident_kernels": trident_k},
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    def fmt(x, spec=".1f"):
        return format(x, spec) if isinstance(x, (int, float)) else "-"

    print(f"\n{gpu_name or 'unknown GPU'} | peak {peak['tflops']} TFLOP/s ({peak['sku']}) | "
          f"matmul 8192^3 {fmt(matmul_tflops)} TFLOP/s | copy {fmt(copy_ceiling)} GB/s")
    for name, c in ctest.items():
        print(f"{name}: {c.get('status')}, {c.get('total', '?')} tests, {c.get('failed', '?')} failed, "
              f"skipped {c.get('skipped', [])}, failed {c.get('failed_tests', [])}")
    print(f"{'model':12s} {'impl':8s} {'tok/s':>9s} {'step ms':>8s} {'MFU pk':>7s} {'MFU mm':>7s}")
    for e in gpt2:
        for impl in ("trident", "pytorch"):
            r = e[impl]
            print(f"{e['model']:12s} {impl:8s} {fmt(r.get('tokens_per_s'), '.0f'):>9s} "
                  f"{fmt(r.get('step_ms_median')):>8s} {fmt(r.get('mfu_vs_datasheet_peak'), '.3f'):>7s} "
                  f"{fmt(r.get('mfu_vs_measured_matmul'), '.3f'):>7s}"
                  + (f"  missing: {str(r.get('missing'))[:60]}" if r.get("missing") else ""))
    for a in attention:
        print(f"attention T={a['T']}: trident fwd+bwd {fmt(a['trident'].get('fwd_bwd_ms'), '.3f')} ms, "
              f"sdpa {fmt(a['pytorch_sdpa'].get('fwd_bwd_ms'), '.3f')} ms, "
              f"ratio {fmt(a['ratio_fwd_bwd_time_trident_over_torch'], '.2f')}, over flash "
              f"{fmt(a.get('ratio_fwd_bwd_time_trident_over_flash'), '.2f')}, over cudnn "
              f"{fmt(a.get('ratio_fwd_bwd_time_trident_over_cudnn'), '.2f')}")
    for op, row in memory.items():
        parts = []
        for impl in ("trident", "pytorch"):
            for d, v in (row.get(impl) or {}).items():
                if isinstance(v, dict) and "gb_per_s" in v:
                    parts.append(f"{impl} {d} {v['gb_per_s']:.0f} GB/s")
        print(f"{op:14s} " + (", ".join(parts) if parts else "missing"))
    vs = breakdown.get("vs_cost_model", {})
    for fam, v in (vs.get("families") or {}).items():
        print(f"{fam:26s} measured {fmt(v['measured_ms'], '.3f'):>8s} ms, predicted "
              f"{fmt(v['predicted_ms'], '.3f'):>8s} ms ({vs.get('gpu_priced')}, current kernels)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
