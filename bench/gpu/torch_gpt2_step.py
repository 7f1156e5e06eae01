#!/usr/bin/env python3
"""PyTorch side of the GPU training-step benchmark: GPT-2 (124M: --model gpt2, 350M:
--model gpt2-medium) trained on random tokens, bf16 autocast, fused AdamW, SDPA (flash)
attention, the same configuration as `trident-train --device cuda --precision bf16`.

    python3 bench/gpu/torch_gpt2_step.py --model gpt2 --batch 8 --seq 1024 --steps 20
    python3 bench/gpu/torch_gpt2_step.py --model gpt2 --compile        # torch.compile
    python3 bench/gpu/torch_gpt2_step.py --model gpt2 --profile 25     # per-kernel table

A step is zero_grad + forward + loss + backward + clip_grad_norm_(1.0) + AdamW step, as in a
trident-train step; the first --warmup-steps steps are not timed (with --compile they include
the compilation). Prints one JSON line: {"impl": "pytorch", "tokens_per_s": ..., ...}.
With --profile N it also profiles one step and adds the N kernels with the most CUDA time.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # as models/src/gpt_config.cpp; "tiny" is for a CPU smoke test
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "tiny": dict(n_layer=2, n_head=2, n_embd=64),
}


class Block(nn.Module):
    def __init__(self, c, nh):
        super().__init__()
        self.nh = nh
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, block, n_layer, n_head, n_embd):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as GPT-2 and Trident
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for blk in self.h:
            x = blk(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gpt2", choices=sorted(PRESETS))
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="profile one step and report the N kernels with the most CUDA time")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke test)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    cfg = PRESETS[args.model]
    model = GPT(args.vocab, args.block, **cfg).to(dev)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            **({"fused": True} if cuda else {}))
    fwd = torch.compile(model) if args.compile else model
    g = torch.Generator(device=dev).manual_seed(args.seed)
    n_batches = 4
    xs = torch.randint(0, args.vocab, (n_batches, args.batch, args.seq), generator=g, device=dev)
    ys = torch.randint(0, args.vocab, (n_batches, args.batch, args.seq), generator=g, device=dev)

    def step(i):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = fwd(xs[i % n_batches], ys[i % n_batches])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    times, losses = [], []
    compile_s = None
    t_start = time.perf_counter()
    for i in range(args.warmup_steps + args.steps):
        sync()
        t0 = time.perf_counter()
        loss = step(i)
        sync()
        dt = time.perf_counter() - t0
        if i == 0 and args.compile:
            compile_s = dt
        if i >= args.warmup_steps:
            times.append(dt)
            losses.append(loss.item())
    tokens = args.batch * args.seq
    result = {
        "impl": "pytorch",
        "model": args.model,
        "config": dict(vocab=args.vocab, block=args.block, **cfg),
        "params": params,
        "batch": args.batch,
        "seq": args.seq,
        "tokens_per_step": tokens,
        "steps_timed": len(times),
        "step_ms_median": 1e3 * statistics.median(times),
        "step_ms_min": 1e3 * min(times),
        "step_ms": [round(1e3 * t, 3) for t in times],
        "tokens_per_s": tokens / statistics.median(times),
        "loss_last": losses[-1],
        "compile": args.compile,
        "compile_first_step_s": compile_s,
        "precision": "bf16 autocast, fp32 master weights, fused AdamW",
        "attention": "F.scaled_dot_product_attention(is_causal=True)",
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "wall_s": time.perf_counter() - t_start,
    }
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step(0)
            sync()
        rows = []
        for e in prof.key_averages():
            us = getattr(e, "device_time_total", None)
            if us is None:
                us = getattr(e, "cuda_time_total", 0)
            if us > 0:
                rows.append({"kernel": e.key[:160], "calls": e.count, "cuda_ms": us / 1e3})
        rows.sort(key=lambda r: -r["cuda_ms"])
        total = sum(r["cuda_ms"] for r in rows)
        result["profile"] = {"total_cuda_ms": total, "top": rows[:args.profile]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
