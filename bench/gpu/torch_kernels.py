#!/usr/bin/env python3
"""PyTorch references for the GPU benchmark, measured in the same run as Trident's:

  matmul     a large cuBLAS bf16 product (torch.matmul 8192^3 on random data): the achievable
             dense bf16 rate, the second denominator of MFU
  copy       device-to-device copy of 1 GiB (bytes read + written): the bandwidth ceiling
  attention  F.scaled_dot_product_attention(is_causal=True) forward and backward, bf16 (the
             default choice, then held to the flash and to the cuDNN backend), the
             shapes of trident-bench-gpu-kernels (B=8, NH=12, HD=64, T=1024 and 2048)
  memory     torch's layer norm, GELU (tanh), fused AdamW and cross entropy at GPT-2 124M shapes,
             with the byte counts trident-bench-gpu-kernels uses

Times are medians of CUDA-event timings after warm-up. Prints one JSON document.
    python3 bench/gpu/torch_kernels.py > torch_kernels.json
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def time_ms(fn, warmup=3, reps=20):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out)


def guarded(fn):
    try:
        return fn()
    except Exception as e:  # an unsupported op must not end the run
        return {"missing": f"{type(e).__name__}: {e}"}


def matmul(n=8192):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = time_ms(lambda: torch.matmul(a, b), warmup=5, reps=20)
    return {"n": n, "ms": ms, "tflops": 2 * n**3 / ms / 1e9}


def copy(nbytes=1 << 30):
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src))
    return {"bytes": nbytes, "ms": ms, "gb_per_s": 2 * nbytes / ms / 1e6}


def attention(T, B=8, NH=12, HD=64):
    C = NH * HD
    qkv = torch.randn(B, T, 3, NH, HD, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dout = torch.randn(B, NH, T, HD, device="cuda", dtype=torch.bfloat16)

    def views():
        q, k, v = qkv.unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    q, k, v = views()
    fwd_ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))

    def both():
        qq, kk, vv = views()
        y = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
        y.backward(dout)

    both_ms = time_ms(both)
    flops = 4.0 * B * NH * T * T * HD / 2
    out = {"B": B, "T": T, "NH": NH, "HD": HD, "C": C, "dtype": "bf16", "fwd_ms": fwd_ms,
           "fwd_bwd_ms": both_ms, "bwd_ms": both_ms - fwd_ms,
           "fwd_tflops": flops / fwd_ms / 1e9, "fwd_bwd_tflops": 3.5 * flops / both_ms / 1e9}
    # The same with SDPA held to one backend: FlashAttention-2 (PyTorch's flash kernel) and
    # cuDNN's fused attention; a backend this build or GPU lacks is recorded as missing.
    out["backends"] = {}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        out["backends"] = {"missing": f"torch.nn.attention: {e}"}
        return out
    for name, backend in (("flash", SDPBackend.FLASH_ATTENTION),
                          ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                f_ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
                b_ms = time_ms(both)
            out["backends"][name] = {"fwd_ms": f_ms, "fwd_bwd_ms": b_ms, "bwd_ms": b_ms - f_ms,
                                     "fwd_tflops": flops / f_ms / 1e9,
                                     "fwd_bwd_tflops": 3.5 * flops / b_ms / 1e9}
        except Exception as e:  # noqa: BLE001 - a missing backend is a result, not a failure
            out["backends"][name] = {"missing": f"{type(e).__name__}: {e}"[:300]}
    return out


def bw(ms, nbytes):
    return {"ms": ms, "bytes": nbytes, "gb_per_s": nbytes / ms / 1e6}


def memory():
    N, C, V = 8 * 1024, 768, 50257
    G = N * 4 * C
    dev, bf = "cuda", torch.bfloat16
    r = {}

    def layernorm():
        x = torch.randn(N, C, device=dev, dtype=bf, requires_grad=True)
        w = torch.randn(C, device=dev, dtype=bf, requires_grad=True)
        b = torch.randn(C, device=dev, dtype=bf, requires_grad=True)
        dy = torch.randn(N, C, device=dev, dtype=bf)
        f = time_ms(lambda: F.layer_norm(x, (C,), w, b))
        both = time_ms(lambda: F.layer_norm(x, (C,), w, b).backward(dy))
        return {"shape": [N, C], "forward": bw(f, 2 * 2 * N * C),
                "backward": bw(both - f, 3 * 2 * N * C)}

    def gelu():
        x = torch.randn(G, device=dev, dtype=bf, requires_grad=True)
        dy = torch.randn(G, device=dev, dtype=bf)
        f = time_ms(lambda: F.gelu(x, approximate="tanh"))
        both = time_ms(lambda: F.gelu(x, approximate="tanh").backward(dy))
        return {"n": G, "forward": bw(f, 2 * 2 * G), "backward": bw(both - f, 3 * 2 * G)}

    def adamw():
        P = 124439808
        p = torch.nn.Parameter(torch.randn(P, device=dev))
        p.grad = torch.randn(P, device=dev)
        opt = torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
        ms = time_ms(opt.step)
        return {"n": P, "update": bw(ms, 28 * P)}

    def cross_entropy():
        logits = (4 * torch.randn(N, V, device=dev)).to(bf).requires_grad_()
        t = torch.randint(0, V, (N,), device=dev)
        f = time_ms(lambda: F.cross_entropy(logits, t))
        both = time_ms(lambda: F.cross_entropy(logits, t).backward())
        return {"shape": [N, V], "forward": bw(f, 2 * N * V), "backward": bw(both - f, 2 * 2 * N * V)}

    for name, fn in (("layernorm", layernorm), ("gelu", gelu), ("adamw", adamw),
                     ("cross_entropy", cross_entropy)):
        r[name] = guarded(fn)
        torch.cuda.empty_cache()
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="matmul,copy,attention,memory")
    args = ap.parse_args()
    torch.manual_seed(0)
    doc = {"torch": torch.__version__, "device": torch.cuda.get_device_name(),
           "sms": torch.cuda.get_device_properties(0).multi_processor_count}
    if "matmul" in args.only:
        doc["matmul"] = guarded(matmul)
    if "copy" in args.only:
        doc["copy"] = guarded(copy)
    if "attention" in args.only:
        doc["attention"] = [guarded(lambda T=T: attention(T)) for T in (1024, 2048)]
    if "memory" in args.only:
        doc["memory"] = guarded(memory)
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
