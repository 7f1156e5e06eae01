#!/usr/bin/python3
"""Writes tests/fixtures/llama_ops_reference.txt: per-op references for Trident's Llama ops
(ops::rms_norm, rope, swiglu, gqa_pack_qkv into causal attention), read by
tests/core/test_llama_ops.cpp.

Run with Debian's torch:
    /usr/bin/python3 tests/reference/make_llama_ops_fixtures.py
Deterministic (fixed seed, one thread); a rerun rewrites identical bytes.

Each op follows Hugging Face transformers' modeling_llama.py (not installable here, so its few
lines are restated below): LlamaRMSNorm, LlamaRotaryEmbedding (default rope_type) with
rotate_half / apply_rotary_pos_emb, silu(gate) * up, repeat_kv and eager causal attention.
Inputs are float32 values; the math runs in float64 autograd, except RoPE's angles, which are
computed in float32 step by step as HF computes them (inv_freq = 1 / base ** (arange(0, D, 2)
/ D), freqs = inv_freq * position), so the long-position case pins that rounding: float64
angles at positions ~1000 differ from HF's by ~6e-5 rad, above the test's tolerance.

File format: '#' comments, then one tensor per line: `name d0xd1x... v0 v1 ...` (values as
float32 printed with 9 significant digits: they read back exactly). Upstream gradients are
`<case>.R`; gradients `<case>.grad_<input>`.
"""
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                   "llama_ops_reference.txt")
torch.manual_seed(20241203)
torch.set_num_threads(1)


def randn(*shape, scale=1.0, shift=0.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale + shift).to(torch.float64)


def rms_norm(x, weight, eps):  # LlamaRMSNorm.forward
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rope_cos_sin(positions, D, theta):  # LlamaRotaryEmbedding, in float32 as HF computes it
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = positions.float()[:, None] * inv_freq[None, :]  # (T, D/2), float32
    emb = torch.cat((freqs, freqs), dim=-1).to(torch.float64)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope(x, n_head, theta, offset):  # (B, T, H*D) -> heads -> apply_rotary_pos_emb -> back
    B, T, C = x.shape
    D = C // n_head
    cos, sin = rope_cos_sin(torch.arange(offset, offset + T), D, theta)
    h = x.view(B, T, n_head, D).transpose(1, 2)
    out = h * cos + rotate_half(h) * sin
    return out.transpose(1, 2).reshape(B, T, C)


def repeat_kv(hidden, n_rep):  # (B, Hkv, T, D) -> (B, Hkv * n_rep, T, D)
    B, Hkv, T, D = hidden.shape
    return hidden[:, :, None, :, :].expand(B, Hkv, n_rep, T, D).reshape(B, Hkv * n_rep, T, D)


def gqa_attention(q, k, v, H, Hkv):  # eager causal attention over repeated kv heads
    B, T, C = q.shape
    D = C // H
    qh = q.view(B, T, H, D).transpose(1, 2)
    kh = repeat_kv(k.view(B, T, Hkv, D).transpose(1, 2), H // Hkv)
    vh = repeat_kv(v.view(B, T, Hkv, D).transpose(1, 2), H // Hkv)
    s = qh @ kh.transpose(-1, -2) / D ** 0.5
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
    return (p @ vh).transpose(1, 2).reshape(B, T, C)


CASES = [
    # name, function of the inputs, inputs
    ("rms_norm", lambda x, w: rms_norm(x, w, 1e-5),
     {"x": randn(2, 3, 16, shift=0.5), "w": randn(16, scale=0.1, shift=1.0)}),
    ("rope", lambda x: rope(x, 2, 10000.0, 3), {"x": randn(2, 5, 16)}),
    ("rope_long", lambda x: rope(x, 1, 500000.0, 1000), {"x": randn(1, 4, 128)}),
    ("swiglu", lambda gate, up: torch.nn.functional.silu(gate) * up,
     {"gate": randn(3, 20, scale=4.0), "up": randn(3, 20)}),
    ("gqa_attention", lambda q, k, v: gqa_attention(q, k, v, 4, 2),
     {"q": randn(2, 5, 16), "k": randn(2, 5, 8), "v": randn(2, 5, 8)}),
]


def line(name, t):
    t = t.detach().to(torch.float32).contiguous()
    shape = "x".join(str(d) for d in t.shape)
    return name + " " + shape + " " + " ".join("%.9g" % v for v in t.reshape(-1).tolist())


def main():
    lines = ["# Written by tests/reference/make_llama_ops_fixtures.py (torch %s); see there."
             % torch.__version__.split("+")[0]]
    for name, fn, inputs in CASES:
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
        out = fn(*leaves.values())
        R = randn(*out.shape)
        (out * R).sum().backward()
        for k, v in inputs.items():
            lines.append(line("%s.%s" % (name, k), v))
        lines.append(line(name + ".R", R))
        lines.append(line(name + ".out", out))
        for k, v in leaves.items():
            lines.append(line("%s.grad_%s" % (name, k), v.grad))
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
