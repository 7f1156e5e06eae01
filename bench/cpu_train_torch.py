#!/usr/bin/python3
"""PyTorch side of the CPU training-throughput benchmark: the same GPT as Trident's
(tests/reference/torch_gpt.py), trained on random tokens with AdamW, timed per step.

Run with Debian's torch (the pyenv python on PATH has none), e.g.
    /usr/bin/python3 bench/cpu_train_torch.py --layers 4 --heads 4 --width 256 --batch 8 \
        --seq 256 --steps 20 --threads 2
A step is zero_grad + forward + backward + clip_grad_norm_ + AdamW step (the same work as a
trident-train step). The first --warmup-steps steps are not timed. Prints one JSON line:
{"impl": "pytorch", "tokens_per_s": ..., "step_ms": ..., ...}; step_cpu_ms is the process's CPU
time per timed step (all threads, spinning included): with one thread, a measure of the work
that other jobs on the machine barely disturb.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
from torch_gpt import GPT, GPTConfig, init_gpt_, num_parameters  # noqa: E402


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--block", type=int, default=256, help="block size (rows of wpe)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--clip", type=float, default=1.0, help="global grad-norm clip; 0 disables")
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    if args.seq > args.block:
        ap.error(f"--seq {args.seq} exceeds --block {args.block}")
    if args.width % args.heads:
        ap.error(f"--heads {args.heads} does not divide --width {args.width}")
    if args.steps < 1:
        ap.error("--steps must be at least 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = GPTConfig(vocab_size=args.vocab, block_size=args.block, n_layer=args.layers,
                    n_head=args.heads, n_embd=args.width)
    model = GPT(cfg)
    init_gpt_(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1, foreach=False)
    g = torch.Generator().manual_seed(args.seed)
    n_batches = 4  # cycle a few random batches; data loading is not what is measured
    xs = torch.randint(0, args.vocab, (n_batches, args.batch, args.seq), generator=g)
    ys = torch.randint(0, args.vocab, (n_batches, args.batch, args.seq), generator=g)

    times, losses = [], []
    cpu_s = 0.0  # process CPU time (all threads) of the timed steps
    for step in range(args.warmup_steps + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        _, loss = model(xs[step % n_batches], ys[step % n_batches])
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        losses.append(loss.item())  # also synchronises
        if step >= args.warmup_steps:
            times.append(time.perf_counter() - t0)
            cpu_s += time.process_time() - c0

    step_s = statistics.mean(times)
    tokens = args.batch * args.seq
    result = {
        "impl": "pytorch",
        "tokens_per_s": tokens / step_s,
        "step_ms": step_s * 1e3,
        "step_ms_median": statistics.median(times) * 1e3,
        "step_ms_min": min(times) * 1e3,
        "step_cpu_ms": cpu_s / len(times) * 1e3,
        "tokens_per_step": tokens,
        "params": num_parameters(model),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "config": {"vocab": args.vocab, "block": args.block, "layers": args.layers,
                   "heads": args.heads, "width": args.width, "batch": args.batch,
                   "seq": args.seq, "steps": args.steps, "warmup_steps": args.warmup_steps,
                   "lr": args.lr, "clip": args.clip},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": {"host": platform.node(), "cpu": cpu_model(), "cores": os.cpu_count()},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
