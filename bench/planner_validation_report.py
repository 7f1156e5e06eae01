"""Report of bench/planner_validation.sh: predicted vs measured step time and peak memory per
layout. Reads the runs' metrics.jsonl files and the planner's JSON from $WORK, writes $OUT and
prints a table (Markdown, as the README quotes it)."""
import json
import os
import statistics
import subprocess

work = os.environ["WORK"]
warmup = int(os.environ["WARMUP"])


def lscpu(field):
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def layout_of(flags, ranks):
    words = flags.split()
    val = {words[i]: words[i + 1] for i in range(0, len(words) - 1) if words[i].startswith("--")}
    tp, pp = int(val.get("--tp", 1)), int(val.get("--pp", 1))
    dp = int(val.get("--dp", ranks // (tp * pp)))
    return {"dp": dp, "tp": tp, "pp": pp, "micro_batches": int(val.get("--micro-batches", 1)),
            "zero": int(val.get("--zero", 0)), "batch": int(val["--batch"])}


def find(plan, lay):
    for p in plan["layouts"]:
        if all(p.get(k) == lay[k] for k in ("dp", "tp", "pp", "micro_batches", "zero")):
            return p
    raise SystemExit(f"layout {lay} not in the planner's output")


rounds = int(os.environ["ROUNDS"])
plan_args = os.environ["PLAN_ARGS"].split()


def merged_calibration(concurrency):
    """Every round's calibration with `concurrency` ranks, each kernel at its fastest."""
    cals = [json.load(open(f"{work}/calibration-{concurrency}-{r}.json")) for r in range(1, rounds + 1)]
    best = min(cals, key=lambda c: sum(c["kernels_s"].values()))  # its machine numbers and links
    doc = dict(best)
    doc["kernels_s"] = {k: min(c["kernels_s"][k] for c in cals) for k in best["kernels_s"]}
    # The step factor is a ratio of two timings taken seconds apart: each round's is paired in
    # time, so the median over rounds (not the fastest round's) is the merged one.
    doc["machine_model"] = dict(best["machine_model"])
    doc["machine_model"]["step_factor"] = statistics.median(
        c["machine_model"]["step_factor"] for c in cals)
    doc["note"] = (best["note"] + f"; merged over {len(cals)} calibrations: each kernel's fastest, "
                   "the median step factor, the machine numbers and links of the fastest "
                   "calibration")
    path = f"{work}/calibration-{concurrency}-merged.json"
    with open(path, "w") as f:
        json.dump(doc, f)
    return path, cals, doc


def planner_json(*args):
    out = subprocess.run([os.environ["PLANNER"], *plan_args, *args, "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


merged = {c: merged_calibration(c) for c in (1, 2)}
plans = {g: planner_json("--gpus", str(g), "--calibration", merged[1 if g == 1 else 2][0])
         for g in (1, 2, 4)}
roofline = {g: planner_json("--gpus", str(g)) for g in (1, 2, 4)}
# The same calibration scaled by its measured step factor (--apply-step-factor), to show what
# the framework's single-process cost adds.
with_factor = {g: planner_json("--gpus", str(g), "--calibration", merged[1 if g == 1 else 2][0],
                               "--apply-step-factor")
                 for g in (1, 2, 4)}
calibrations = {f"{c} rank(s)": {"merged": merged[c][2],
                                 "kernel_seconds_total_per_round": [sum(x["kernels_s"].values())
                                                                    for x in merged[c][1]],
                                 "step_factor_per_round": [x["machine_model"]["step_factor"]
                                                           for x in merged[c][1]],
                                 "step_anchor_per_round": [x["machine_model"]["step_anchor"]
                                                           for x in merged[c][1]]}
                for c in (1, 2)}

runs = []
with open(os.environ["RAW"]) as f:
    for row in f.read().splitlines():
        name, rnd, ranks, flags, busy, others, load, command = row.split("\t")
        steps = [json.loads(l) for l in open(f"{work}/metrics-{name}-{rnd}.jsonl") if '"step_ms"' in l]  # not val_loss lines
        timed = [s for s in steps if s["step"] > warmup]
        runs.append({
            "layout": name, "round": int(rnd), "ranks": int(ranks), "flags": flags,
            "command": command, "others_busy_percent_before": int(busy),
            "others_busy_percent_during": int(others), "load_average": float(load),
            "step_ms": [s["step_ms"] for s in timed],
            "exposed_comm_ms": [s["exposed_comm_ms"] for s in timed],
            "bubble_ms": [s["bubble_ms"] for s in timed],
            "peak_mem_bytes_rank0": max(s["peak_mem_bytes"] for s in steps),
            "step_ms_median": statistics.median(s["step_ms"] for s in timed),
        })

results = []
for name in dict.fromkeys(r["layout"] for r in runs):
    rs = sorted((r for r in runs if r["layout"] == name), key=lambda r: r["round"])
    ranks = rs[0]["ranks"]
    lay = layout_of(rs[0]["flags"], ranks)
    pred, roof = find(plans[ranks], lay), find(roofline[ranks], lay)
    factored = find(with_factor[ranks], lay)
    per_round = [r["step_ms_median"] for r in rs]
    best = min(min(r["step_ms"]) for r in rs)
    median_all = statistics.median(statistics.median(r["step_ms"]) for r in rs)
    med = lambda key: statistics.median(statistics.median(r[key]) for r in rs)
    peak = max(r["peak_mem_bytes_rank0"] for r in rs)
    results.append({
        "layout": name, "ranks": ranks, "planner_layout": pred["layout"], **lay,
        "measured_step_ms": best, "measured_median_step_ms": median_all,
        "measured_median_step_ms_rounds": per_round,
        "round_spread": (max(per_round) - min(per_round)) / median_all,
        "measured_exposed_comm_ms": med("exposed_comm_ms"), "measured_bubble_ms": med("bubble_ms"),
        "measured_peak_mem_bytes_rank0": peak,
        "predicted_step_ms": pred["step_ms"], "error": pred["step_ms"] / best - 1,
        "error_vs_median": pred["step_ms"] / median_all - 1,
        "predicted": {k: pred[k] for k in ("compute_ms", "tp_comm_ms", "pp_comm_ms", "bubble_ms",
                                           "dp_comm_ms", "dp_exposed_ms", "syncs_ms", "optimizer_ms",
                                           "time_share")},
        "predicted_rank": pred["rank"],
        "predicted_mem_bytes_stage0": pred["memory"]["stage_total_bytes"][0],
        "mem_error": pred["memory"]["stage_total_bytes"][0] / peak - 1,
        "uncalibrated_step_ms": roof["step_ms"], "uncalibrated_error": roof["step_ms"] / best - 1,
        "with_step_factor_step_ms": factored["step_ms"],
        "with_step_factor_error": factored["step_ms"] / best - 1,
        "others_busy_percent_during_max": max(r["others_busy_percent_during"] for r in rs),
    })


def ranks_of(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0] * len(values)
    for pos, i in enumerate(order):
        out[i] = pos
    return out


def spearman(a, b):
    n = len(a)
    if n < 2:
        return None
    ra, rb = ranks_of(a), ranks_of(b)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb)) / (n * (n * n - 1))


def mean_abs(key, rows):
    return statistics.mean(abs(r[key]) for r in rows) if rows else None


two = [r for r in results if r["ranks"] <= 2]
four = [r for r in results if r["ranks"] == 4]
loads = [float(x) for x in (os.environ["LOAD_BEFORE"] + " " + os.environ["LOAD_AFTER"]).split()]
loads += [r["load_average"] for r in runs]
summary = {
    "mean_abs_error_all": mean_abs("error", results),
    "max_abs_error_all": max(abs(r["error"]) for r in results),
    "mean_abs_error_1_2_ranks": mean_abs("error", two),
    "mean_abs_error_4_ranks_oversubscribed": mean_abs("error", four),
    "mean_abs_error_uncalibrated": mean_abs("uncalibrated_error", results),
    "mean_abs_error_with_step_factor_1_2_ranks": mean_abs("with_step_factor_error", two),
    "step_factor": {c: merged[c][2]["machine_model"]["step_factor"] for c in (1, 2)},
    "mean_abs_error_vs_median_1_2_ranks": mean_abs("error_vs_median", two),
    "mean_abs_memory_error": mean_abs("mem_error", results),
    "spearman_rank_correlation_1_2_ranks": spearman([r["measured_step_ms"] for r in two],
                                                     [r["predicted_step_ms"] for r in two]),
    # How much slower the layout the planner ranks first (among the measured 1-2 rank ones) ran
    # than the fastest measured one.
    "planner_pick_1_2_ranks": min(two, key=lambda r: r["predicted_step_ms"])["layout"] if two else None,
    "planner_pick_regret_1_2_ranks": (min(two, key=lambda r: r["predicted_step_ms"])["measured_step_ms"]
                                      / min(r["measured_step_ms"] for r in two) - 1) if two else None,
    "measured_order": [r["layout"] for r in sorted(results, key=lambda r: r["measured_step_ms"])],
    "predicted_order": [r["layout"] for r in sorted(results, key=lambda r: r["predicted_step_ms"])],
}
doc = {
    "benchmark": "trident-planner's predicted step time and memory vs trident-train on this "
                 "machine (bench/planner_validation.sh)",
    "date": os.environ["START"],
    "machine": {"cpu": lscpu("Model name"), "cores": os.cpu_count(), "host": os.uname().nodename},
    "trident_commit": os.environ.get("TRIDENT_COMMIT") or subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip(),
    "model_args": os.environ["MODEL_ARGS"], "planner_args": os.environ["PLAN_ARGS"],
    "steps": int(os.environ["STEPS"]), "warmup_steps_dropped": warmup,
    "rounds": int(os.environ["ROUNDS"]), "quiet_busy_percent": int(os.environ["QUIET_BUSY"]),
    "load_average_before": os.environ["LOAD_BEFORE"], "load_average_after": os.environ["LOAD_AFTER"],
    "load_average_max": max(loads),
    "note": ("measured = the fastest step_ms (rank 0's metrics.jsonl) after the warm-up steps "
             "over all rounds (measured_median_step_ms: the median over rounds of each round's "
             "median); predicted = trident-planner with each kernel's fastest time over the "
             "rounds' calibrations; error = predicted / measured - 1 (error_vs_median: against "
             "the median); round_spread = (max - min) / "
             "median of the per-round medians; others_busy_percent_during = CPU used by other "
             "processes during the run, as a share of all cores; memory compares rank 0's "
             "allocator peak with the planner's stage-0 total"),
    "summary": summary, "results": results, "runs": runs, "calibrations": calibrations,
}
with open(os.environ["OUT"], "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")

print("\n| layout | ranks | fastest step, ms | median step (round spread) | predicted | error | "
      "with step factor | uncalibrated preset | exposed comm / bubble measured | predicted | "
      "peak memory rank 0 | predicted |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in results:
    p = r["predicted"]
    print(f"| {r['layout']} | {r['ranks']} | {r['measured_step_ms']:.0f} | "
          f"{r['measured_median_step_ms']:.0f} ({100 * r['round_spread']:.0f}%) "
          f"| {r['predicted_step_ms']:.0f} | {100 * r['error']:+.0f}% | {r['with_step_factor_step_ms']:.0f} "
          f"({100 * r['with_step_factor_error']:+.0f}%) | {r['uncalibrated_step_ms']:.0f} "
          f"({100 * r['uncalibrated_error']:+.0f}%) | {r['measured_exposed_comm_ms']:.0f} / "
          f"{r['measured_bubble_ms']:.0f} | {p['dp_exposed_ms']:.0f} / {p['bubble_ms'] + p['pp_comm_ms']:.0f} "
          f"| {r['measured_peak_mem_bytes_rank0'] / 2**20:.1f} MiB | "
          f"{r['predicted_mem_bytes_stage0'] / 2**20:.1f} MiB ({100 * r['mem_error']:+.0f}%) |")
s = summary
print(f"\nmean |error| {100 * s['mean_abs_error_all']:.1f}% (max {100 * s['max_abs_error_all']:.1f}%); "
      f"1-2 ranks {100 * s['mean_abs_error_1_2_ranks']:.1f}%"
      + (f", 4 ranks oversubscribed {100 * s['mean_abs_error_4_ranks_oversubscribed']:.1f}%" if four else "")
      + f"; uncalibrated preset {100 * s['mean_abs_error_uncalibrated']:.1f}%; "
      f"memory {100 * s['mean_abs_memory_error']:.1f}%; 1-2 ranks with the step factor "
      f"{100 * s['mean_abs_error_with_step_factor_1_2_ranks']:.1f}% (step factor "
      f"{s['step_factor'][1]:.3f} / {s['step_factor'][2]:.3f} for 1 / 2 ranks); 1-2 ranks against the median step "
      f"{100 * s['mean_abs_error_vs_median_1_2_ranks']:.1f}%")
if two:
    print(f"1-2 ranks: Spearman rank correlation {s['spearman_rank_correlation_1_2_ranks']:.2f}; "
          f"planner's pick {s['planner_pick_1_2_ranks']} ran "
          f"{100 * s['planner_pick_regret_1_2_ranks']:.0f}% slower than the fastest measured")
print("measured order: ", " < ".join(s["measured_order"]))
print("predicted order:", " < ".join(s["predicted_order"]))
print(f"load average before {os.environ['LOAD_BEFORE']}, after {os.environ['LOAD_AFTER']}, "
      f"max seen {max(loads):.1f}; others' CPU during runs up to "
      f"{max(r['others_busy_percent_during'] for r in runs)}% of the cores")
print(f"wrote {os.environ['OUT']}")
