#!/usr/bin/python3
"""Writes the Llama reference fixtures in tests/fixtures/ from the PyTorch model in
torch_llama.py (Hugging Face LlamaForCausalLM's names and semantics).

Run with Debian's torch (the pyenv python on PATH has none):
    /usr/bin/python3 tests/reference/make_llama_fixtures.py
Deterministic: fixed seeds, one thread, sorted headers; a rerun rewrites identical bytes.

Tiny config: vocab 64, 16 positions, 2 layers, width 32, 4 heads, 2 kv heads (head dim 8),
intermediate 88, rope theta 10000, RMSNorm eps 1e-5; batch B=3, T=11.
Weights are float32 (q/k projections N(0, 0.1) so that attention is not uniform and RoPE shows
in the logits; other matrices N(0, 0.02); RMSNorm weights 1 + N(0, 0.1)). Every reference value
is computed in float64 from those float32 weights and stored rounded to float32.

Tensor names are Trident's (models/include/trident/models/llama_config.hpp): Hugging Face's
without the "model." prefix (embed_tokens.weight, layers.{i}.self_attn.q_proj.weight, ...,
norm.weight, lm_head.weight).

  llama_tiny_grads.safetensors   <param>, inputs/targets I32 (B,T), logits (B,T,V), loss F32 [1],
                                 grad.<param> for every parameter
  llama_tiny_adamw.safetensors   10 steps of AdamW (betas 0.9/0.95, eps 1e-5, wd 0.1 on all
                                 params, clip global grad norm at 1.0, warmup 3 + cosine
                                 1e-2 -> 1e-3): <param> initial weights, inputs/targets I32
                                 (10,B,T), losses (10,), lrs (10,), grad_norms (10,) (before
                                 clipping), final.<param>
  hf_llama_tiny/config.json + model.safetensors
                                 the initial weights in Hugging Face layout (LlamaConfig keys;
                                 model.* names, lm_head.weight), float32

Why AdamW's eps is 1e-5 (as the equivalence runs' --eps), not 1e-8: Adam's update
m/(sqrt(v)+eps) turns the rounding noise of gradient entries much smaller than their neighbours
into updates of ~lr whose sign depends on summation order, and at lr 1e-2 on 0.02-sized weights
that is visible. Measured as torch float32 against torch float64 over the 10 steps (worst
max|diff|/max|w| over the final weights): eps 1e-8: 6.6e-5, 1e-6: 2.1e-5, 1e-5: 7.0e-6,
1e-4: 1.8e-6. The gradients' typical entry is ~1e-2, so eps 1e-5 still normalises them.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_lite  # noqa: E402
from torch_gpt import warmup_cosine_lr  # noqa: E402
from torch_llama import LlamaConfig, LlamaForCausalLM, init_llama_  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
SEED = 4242
CFG = LlamaConfig(vocab_size=64, max_position_embeddings=16, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, hidden_size=32,
                  intermediate_size=88, rope_theta=10000.0, rms_norm_eps=1e-5)
QK_STD = 0.1
B, T = 3, 11
STEPS = 10
ADAMW_EPS = 1e-5  # not 1e-8: see the docstring


def ours(hf_name):
    return hf_name[len("model."):] if hf_name.startswith("model.") else hf_name


def config_metadata():
    return {
        "vocab_size": CFG.vocab_size, "block_size": CFG.max_position_embeddings,
        "n_layer": CFG.num_hidden_layers, "n_head": CFG.num_attention_heads,
        "n_kv_head": CFG.num_key_value_heads, "n_embd": CFG.hidden_size,
        "ffn_hidden": CFG.intermediate_size, "rope_theta": CFG.rope_theta,
        "norm_eps": CFG.rms_norm_eps, "batch": B, "seq": T, "seed": SEED,
        "dtype": "float32 weights, float64 reference computation",
        "generator": "tests/reference/make_llama_fixtures.py", "torch_version": torch.__version__,
    }


def named_params(model):
    return [(ours(n), p) for n, p in model.named_parameters()]


def model_from(state32, dtype):
    m = LlamaForCausalLM(CFG)
    m.load_state_dict(state32)
    return m.to(dtype)


def make_grads(state32, inputs, targets):
    model = model_from(state32, torch.float64)
    logits, loss = model(inputs.long(), targets.long())
    loss.backward()
    f32 = torch.float32
    tensors = [(ours(n), state32[n]) for n, _ in model.named_parameters()]
    tensors += [("inputs", inputs), ("targets", targets), ("logits", logits.detach().to(f32)),
                ("loss", loss.detach().reshape(1).to(f32))]
    tensors += [("grad." + n, p.grad.detach().to(f32)) for n, p in named_params(model)]
    meta = config_metadata()
    meta["loss_definition"] = "mean cross entropy over all B*T positions, untied head"
    safetensors_lite.save_file(tensors, os.path.join(OUT, "llama_tiny_grads.safetensors"), meta)
    return loss.item()


def train(state32, dtype, batches_x, batches_y):
    model = model_from(state32, dtype)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.95), eps=ADAMW_EPS, weight_decay=0.1,
                            foreach=False)
    losses, lrs, norms = [], [], []
    for step in range(STEPS):
        lr = warmup_cosine_lr(step, STEPS, 3, 1e-2, 1e-3)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        _, loss = model(batches_x[step].long(), batches_y[step].long())
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(params, 1.0).item())
        opt.step()
        losses.append(loss.item())
        lrs.append(lr)
    return model, losses, lrs, norms


def make_adamw(state32, batches_x, batches_y):
    model, losses, lrs, norms = train(state32, torch.float64, batches_x, batches_y)
    f32 = torch.float32
    meta = config_metadata()
    meta.update({
        "steps": STEPS, "optimizer": "AdamW (torch.optim.AdamW)", "beta1": 0.9, "beta2": 0.95,
        "eps": ADAMW_EPS, "weight_decay": 0.1,
        "weight_decay_applies_to": "all parameters (including RMSNorm weights and embeddings)",
        "update_rule": "p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; "
                       "p -= lr * (m/(1-b1^t)) / (sqrt(v)/sqrt(1-b2^t) + eps), t = step+1",
        "clipping": "global L2 norm over all gradients, max 1.0, before the step: "
                    "g *= min(1, 1.0/(norm + 1e-6)) (torch.nn.utils.clip_grad_norm_)",
        "lr_schedule": "warmup 3 + cosine over 10 steps, max_lr 1e-2, min_lr 1e-3: step s < 3: "
                       "max_lr*(s+1)/3; else min_lr + 0.5*(1+cos(pi*(s-3)/7))*(max_lr-min_lr)",
        "loss_definition": "losses[k]: loss of batch k before step k's update",
    })
    tensors = [(ours(n), state32[n]) for n, _ in model.named_parameters()]
    tensors += [("inputs", batches_x), ("targets", batches_y),
                ("losses", torch.tensor(losses, dtype=f32)),
                ("lrs", torch.tensor(lrs, dtype=f32)),
                ("grad_norms", torch.tensor(norms, dtype=f32))]
    tensors += [("final." + n, p.detach().to(f32)) for n, p in named_params(model)]
    safetensors_lite.save_file(tensors, os.path.join(OUT, "llama_tiny_adamw.safetensors"), meta)
    return model, losses, norms


def make_hf(state32):
    d = os.path.join(OUT, "hf_llama_tiny")
    os.makedirs(d, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": CFG.hidden_size // CFG.num_attention_heads,
        "hidden_act": "silu", "hidden_size": CFG.hidden_size, "initializer_range": 0.02,
        "intermediate_size": CFG.intermediate_size,
        "max_position_embeddings": CFG.max_position_embeddings, "mlp_bias": False,
        "model_type": "llama", "num_attention_heads": CFG.num_attention_heads,
        "num_hidden_layers": CFG.num_hidden_layers,
        "num_key_value_heads": CFG.num_key_value_heads, "pretraining_tp": 1,
        "rms_norm_eps": CFG.rms_norm_eps, "rope_scaling": None, "rope_theta": CFG.rope_theta,
        "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
        "vocab_size": CFG.vocab_size,
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    safetensors_lite.save_file(list(state32.items()), os.path.join(d, "model.safetensors"),
                               {"format": "pt"})


def max_rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def main():
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    os.makedirs(OUT, exist_ok=True)
    model = LlamaForCausalLM(CFG)
    init_llama_(model, qk_std=QK_STD)
    state32 = {n: p.detach().clone() for n, p in model.named_parameters()}

    g = torch.Generator().manual_seed(SEED + 1)
    inputs = torch.randint(0, CFG.vocab_size, (B, T), generator=g, dtype=torch.int32)
    targets = torch.randint(0, CFG.vocab_size, (B, T), generator=g, dtype=torch.int32)
    loss = make_grads(state32, inputs, targets)

    batches_x = torch.randint(0, CFG.vocab_size, (STEPS, B, T), generator=g, dtype=torch.int32)
    batches_y = torch.randint(0, CFG.vocab_size, (STEPS, B, T), generator=g, dtype=torch.int32)
    m64, losses, norms = make_adamw(state32, batches_x, batches_y)
    make_hf(state32)

    # How well conditioned the fixture is: torch's own float32 run against the float64 one.
    m32, losses32, _, _ = train(state32, torch.float32, batches_x, batches_y)
    worst = max((max_rel(p32, p64), n) for (n, p32), (_, p64) in
                zip(m32.named_parameters(), m64.named_parameters()))
    with torch.no_grad():
        l32 = model_from(state32, torch.float32)(inputs.long())[0]
        l64 = model_from(state32, torch.float64)(inputs.long())[0]
    print(f"grads: loss {loss:.6f} (ln V = {math.log(CFG.vocab_size):.6f})")
    print("adamw losses " + " ".join(f"{v:.4f}" for v in losses))
    print("adamw grad norms " + " ".join(f"{v:.3f}" for v in norms))
    print(f"torch float32 vs float64: logits max_rel {max_rel(l32, l64):.2e}; final weights "
          f"worst max_rel {worst[0]:.2e} ({worst[1]}); loss diff "
          f"{max(abs(a - b) for a, b in zip(losses32, losses)):.2e}")
    back, _ = safetensors_lite.load_file(os.path.join(OUT, "llama_tiny_grads.safetensors"))
    assert all(torch.equal(back[ours(n)], t) for n, t in state32.items())
    for root, _, files in sorted(os.walk(OUT)):
        for name in sorted(files):
            if "llama" in root or "llama" in name:
                p = os.path.join(root, name)
                print(f"  {os.path.relpath(p, OUT):40s} {os.path.getsize(p):8d} bytes")


if __name__ == "__main__":
    main()
