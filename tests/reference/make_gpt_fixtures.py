#!/usr/bin/python3
"""Writes the GPT reference fixtures in tests/fixtures/ from the PyTorch model in torch_gpt.py.

Run with Debian's torch (the pyenv python on PATH has none):
    /usr/bin/python3 tests/reference/make_gpt_fixtures.py
Deterministic: fixed seeds, one thread, sorted headers; a rerun rewrites identical bytes.

Tiny config: vocab 67, block_size 16, n_layer 2, n_head 4, n_embd 32; batch B=3, T=11.

  gpt_tiny_grads.safetensors   <param> (our names), inputs/targets I32 (B,T), logits (B,T,V),
                               loss F32 [1], grad.<param> for every parameter
  gpt_tiny_sgd.safetensors     10 steps of SGD (lr 0.1, momentum 0.9, nesterov, wd 0.01)
  gpt_tiny_adamw.safetensors   10 steps of AdamW (betas 0.9/0.95, eps 1e-6, wd 0.1 on all params,
                               clip global grad norm at 1.0, warmup 3 + cosine 1e-2 -> 1e-3)
      both: <param> initial weights (same as in gpt_tiny_grads), inputs/targets I32 (10,B,T),
            losses (10,) (loss of step k's batch before step k's update), lrs (10,),
            grad_norms (10,) (global L2 norm before clipping), final.<param>
  hf_tiny/config.json + hf_tiny/model.safetensors
                               the same initial weights in Hugging Face GPT2LMHeadModel layout
                               (transformer. prefix, Conv1D weights (in,out), attn.bias and
                               attn.masked_bias buffers, lm_head.weight tied to wte)
  tiny_tokens.bin              200 tokens < 67, llm.c shard format (magic 20240520, version 1)
  tiny_eval.json               mean cross entropy of those weights over the first 4
                               non-overlapping windows of 16 tokens of tiny_tokens.bin

Why AdamW's eps is 1e-6, not the usual 1e-8 (the fixture must be well conditioned to be a spec
at 1e-5): Adam's update m/(sqrt(v)+eps) scales a gradient entry g with |g| >> eps to O(1), so it
turns the float rounding noise of any entry much smaller than its neighbours into an update of
the full size lr, whose sign depends on the implementation's summation order.
  - The key-bias gradient is zero in exact arithmetic (q.b_k is constant along each query row
    and softmax ignores a per-row constant): it is pure rounding noise, ~3e-12. With eps 1e-8 it
    moves b_k by ~3e-4*lr per step in a direction torch and Trident do not agree on; with eps
    1e-6 by ~3e-6*lr.
  - With the 0.02 init attention is nearly uniform, so q/k weight gradients are ~1e-6 and carry
    ~1e-4 relative rounding error; eps 1e-6 damps their normalised update.
Measured as float32 vs float64 torch on this run (max|diff|/max|w| over the worst tensor): eps
1e-8: 3.7e-5 (attn.qkv.bias); eps 1e-6: 2.7e-6. Trident vs this fixture: 6.0e-5 with eps 1e-8,
4.1e-6 (attn.qkv.weight) with eps 1e-6, under the test's 1e-5. Re-drawing attn.qkv.weight with
a larger std to peak the attention was tried and is worse (float32 vs float64, eps 1e-6: std
0.2 gives 1.2e-4, std 0.4 gives 4e-2): a peaked softmax makes the 10-step trajectory itself
sensitive to rounding. So the AdamW fixture keeps the GPT-2 init of the others.
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_lite  # noqa: E402
from torch_gpt import GPT, GPTConfig, init_gpt_, warmup_cosine_lr  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
SEED = 1337
CFG = GPTConfig(vocab_size=67, block_size=16, n_layer=2, n_head=4, n_embd=32, ln_eps=1e-5)
B, T = 3, 11
STEPS = 10
EVAL_T, EVAL_WINDOWS, NUM_TOKENS = 16, 4, 200
LLMC_MAGIC, LLMC_VERSION = 20240520, 1
ADAMW_EPS = 1e-6  # not 1e-8: see the docstring
ADAMW_EPS_REASON = (
    "eps 1e-6 rather than 1e-8 so that the fixture is well conditioned: the key-bias gradient is "
    "zero in exact arithmetic (softmax ignores q.b_k, constant per query row) and the q/k weight "
    "gradients are ~1e-6 at the 0.02 init; Adam's normalised update m/(sqrt(v)+eps) would turn "
    "their rounding noise into implementation-dependent updates of ~lr. float32 vs float64 torch: "
    "worst final-weight relative error 3.7e-5 with eps 1e-8, 2.7e-6 with eps 1e-6")


def config_metadata():
    return {
        "vocab_size": CFG.vocab_size, "block_size": CFG.block_size, "n_layer": CFG.n_layer,
        "n_head": CFG.n_head, "n_embd": CFG.n_embd, "ln_eps": CFG.ln_eps, "batch": B, "seq": T,
        "seed": SEED, "dtype": "float32", "generator": "tests/reference/make_gpt_fixtures.py",
        "torch_version": torch.__version__,
    }


def params_of(model):
    return [(n, p.detach().clone()) for n, p in model.named_parameters()]


def make_grads(model, inputs, targets):
    model.zero_grad(set_to_none=True)
    logits, loss = model(inputs.long(), targets.long())
    loss.backward()
    tensors = params_of(model)
    tensors += [("inputs", inputs), ("targets", targets), ("logits", logits.detach()),
                ("loss", loss.detach().reshape(1))]
    tensors += [("grad." + n, p.grad.detach().clone()) for n, p in model.named_parameters()]
    meta = config_metadata()
    meta["loss_definition"] = "mean cross entropy over all B*T positions, tied head"
    safetensors_lite.save_file(tensors, os.path.join(OUT, "gpt_tiny_grads.safetensors"), meta)
    return loss.item()


def global_grad_norm(model):
    return torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in model.parameters())).item()


def make_training(kind, init_state, batches_x, batches_y):
    model = GPT(CFG)
    model.load_state_dict(init_state)
    params = list(model.parameters())
    meta = config_metadata()
    meta["steps"] = STEPS
    if kind == "sgd":
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01,
                              dampening=0.0, foreach=False)
        meta.update({
            "optimizer": "SGD (torch.optim.SGD)", "lr": 0.1, "momentum": 0.9, "nesterov": "true",
            "dampening": 0.0, "weight_decay": 0.01,
            "update_rule": "g += wd*p (coupled L2, on all parameters); buf = g at step 0 else "
                           "buf = momentum*buf + g; p -= lr*(g + momentum*buf)",
            "clipping": "none", "lr_schedule": "constant 0.1",
        })
    else:
        opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.95), eps=ADAMW_EPS,
                                weight_decay=0.1, foreach=False)
        meta.update({
            "optimizer": "AdamW (torch.optim.AdamW)", "beta1": 0.9, "beta2": 0.95,
            "eps": ADAMW_EPS, "eps_reason": ADAMW_EPS_REASON, "weight_decay": 0.1,
            "weight_decay_applies_to": "all parameters (including biases, LayerNorm, embeddings)",
            "update_rule": "p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; "
                           "p -= lr * (m/(1-b1^t)) / (sqrt(v)/sqrt(1-b2^t) + eps), t = step+1",
            "clipping": "global L2 norm over all gradients, max 1.0, before the step: "
                        "g *= min(1, 1.0/(norm + 1e-6)) (torch.nn.utils.clip_grad_norm_)",
            "lr_schedule": "warmup 3 + cosine over 10 steps, max_lr 1e-2, min_lr 1e-3: step s < 3: "
                           "max_lr*(s+1)/3; else min_lr + 0.5*(1+cos(pi*(s-3)/7))*(max_lr-min_lr)",
        })
    losses, lrs, norms = [], [], []
    for step in range(STEPS):
        lr = 0.1 if kind == "sgd" else warmup_cosine_lr(step, STEPS, 3, 1e-2, 1e-3)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        _, loss = model(batches_x[step].long(), batches_y[step].long())
        loss.backward()
        if kind == "adamw":
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0).item()
        else:
            norm = global_grad_norm(model)
        opt.step()
        losses.append(loss.item())
        lrs.append(lr)
        norms.append(norm)
    meta["loss_definition"] = "losses[k]: loss of batch k before step k's update"
    tensors = [(n, init_state[n]) for n, _ in model.named_parameters()]
    tensors += [("inputs", batches_x), ("targets", batches_y),
                ("losses", torch.tensor(losses, dtype=torch.float32)),
                ("lrs", torch.tensor(lrs, dtype=torch.float32)),
                ("grad_norms", torch.tensor(norms, dtype=torch.float32))]
    tensors += [("final." + n, p.detach().clone()) for n, p in model.named_parameters()]
    safetensors_lite.save_file(tensors, os.path.join(OUT, f"gpt_tiny_{kind}.safetensors"), meta)
    return losses, norms


# Our name -> Hugging Face GPT-2 name; Conv1D weights are stored (in, out), i.e. transposed.
HF_CONV1D = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight")
HF_RENAMES = [("blocks.", "h."), (".ln1.", ".ln_1."), (".ln2.", ".ln_2."),
              (".attn.qkv.", ".attn.c_attn."), (".attn.proj.", ".attn.c_proj."),
              (".mlp.fc.", ".mlp.c_fc."), (".mlp.proj.", ".mlp.c_proj.")]


def hf_name(ours):
    for a, b in HF_RENAMES:
        ours = ours.replace(a, b)
    return ours


def make_hf(init_state):
    d = os.path.join(OUT, "hf_tiny")
    os.makedirs(d, exist_ok=True)
    config = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0, "layer_norm_epsilon": CFG.ln_eps,
        "model_type": "gpt2", "n_ctx": CFG.block_size, "n_positions": CFG.block_size,
        "n_embd": CFG.n_embd, "n_head": CFG.n_head, "n_layer": CFG.n_layer, "n_inner": None,
        "vocab_size": CFG.vocab_size, "scale_attn_weights": True,
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    tensors = []
    causal = torch.tril(torch.ones(CFG.block_size, CFG.block_size)).view(
        1, 1, CFG.block_size, CFG.block_size)
    for name, t in init_state.items():
        out = t.t().contiguous() if name.endswith(HF_CONV1D) else t
        tensors.append(("transformer." + hf_name(name), out))
        if name.endswith("ln1.weight"):  # one buffer pair per block, as HF's older checkpoints
            prefix = "transformer." + hf_name(name)[: -len("ln_1.weight")]
            tensors.append((prefix + "attn.bias", causal))
            tensors.append((prefix + "attn.masked_bias", torch.tensor(-1e4)))
    tensors.append(("lm_head.weight", init_state["wte.weight"]))
    safetensors_lite.save_file(tensors, os.path.join(d, "model.safetensors"), {"format": "pt"})


def hf_forward(sd, idx):
    """GPT-2 forward written the way Hugging Face's modeling_gpt2 computes it (Conv1D:
    y = x W + b with W (in, out)), reading the exported tensors: checks the export's layout."""
    import torch.nn.functional as F
    p = "transformer."
    B_, T_ = idx.shape
    C, nh = CFG.n_embd, CFG.n_head
    x = sd[p + "wte.weight"][idx] + sd[p + "wpe.weight"][:T_]
    for i in range(CFG.n_layer):
        h = f"{p}h.{i}."
        a = F.layer_norm(x, (C,), sd[h + "ln_1.weight"], sd[h + "ln_1.bias"], CFG.ln_eps)
        q, k, v = (a @ sd[h + "attn.c_attn.weight"] + sd[h + "attn.c_attn.bias"]).split(C, 2)
        q, k, v = (t.view(B_, T_, nh, C // nh).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(C // nh)
        causal = sd[h + "attn.bias"][:, :, :T_, :T_].bool()
        att = torch.where(causal, att, sd[h + "attn.masked_bias"]).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B_, T_, C)
        x = x + y @ sd[h + "attn.c_proj.weight"] + sd[h + "attn.c_proj.bias"]
        m = F.layer_norm(x, (C,), sd[h + "ln_2.weight"], sd[h + "ln_2.bias"], CFG.ln_eps)
        m = F.gelu(m @ sd[h + "mlp.c_fc.weight"] + sd[h + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ sd[h + "mlp.c_proj.weight"] + sd[h + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), sd[p + "ln_f.weight"], sd[p + "ln_f.bias"], CFG.ln_eps)
    return x @ sd["lm_head.weight"].t()


def make_tokens_and_eval(model):
    g = torch.Generator().manual_seed(SEED + 2)
    tokens = torch.randint(0, CFG.vocab_size, (NUM_TOKENS,), generator=g)
    header = [LLMC_MAGIC, LLMC_VERSION, NUM_TOKENS] + [0] * 253
    with open(os.path.join(OUT, "tiny_tokens.bin"), "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(tokens.to(torch.int16).numpy().astype("<u2").tobytes())
    x = torch.stack([tokens[k * EVAL_T:(k + 1) * EVAL_T] for k in range(EVAL_WINDOWS)])
    y = torch.stack([tokens[k * EVAL_T + 1:(k + 1) * EVAL_T + 1] for k in range(EVAL_WINDOWS)])
    with torch.no_grad():
        _, loss = model(x, y)
        window_losses = [model(x[k:k + 1], y[k:k + 1])[1].item() for k in range(EVAL_WINDOWS)]
    expected = {
        "weights": "hf_tiny", "tokens": "tiny_tokens.bin", "seq_len": EVAL_T,
        "windows": EVAL_WINDOWS,
        "definition": "window k: inputs tokens[k*T : k*T+T], targets tokens[k*T+1 : k*T+T+1]; "
                      "mean_loss is the mean cross entropy over all windows*T positions",
        "mean_loss": loss.item(), "window_losses": window_losses,
    }
    with open(os.path.join(OUT, "tiny_eval.json"), "w") as f:
        json.dump(expected, f, indent=2, sort_keys=True)
        f.write("\n")
    return loss.item()


def main():
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    os.makedirs(OUT, exist_ok=True)
    model = GPT(CFG)
    init_gpt_(model)
    init_state = {n: p.detach().clone() for n, p in model.named_parameters()}

    g = torch.Generator().manual_seed(SEED + 1)
    inputs = torch.randint(0, CFG.vocab_size, (B, T), generator=g, dtype=torch.int32)
    targets = torch.randint(0, CFG.vocab_size, (B, T), generator=g, dtype=torch.int32)
    loss = make_grads(model, inputs, targets)

    batches_x = torch.randint(0, CFG.vocab_size, (STEPS, B, T), generator=g, dtype=torch.int32)
    batches_y = torch.randint(0, CFG.vocab_size, (STEPS, B, T), generator=g, dtype=torch.int32)
    sgd = make_training("sgd", init_state, batches_x, batches_y)
    adamw = make_training("adamw", init_state, batches_x, batches_y)
    make_hf(init_state)
    eval_loss = make_tokens_and_eval(model)

    # Self-check: what was written reads back equal.
    back, _ = safetensors_lite.load_file(os.path.join(OUT, "gpt_tiny_grads.safetensors"))
    assert all(torch.equal(back[n], t) for n, t in init_state.items())
    hf, _ = safetensors_lite.load_file(os.path.join(OUT, "hf_tiny", "model.safetensors"))
    hf_logits = hf_forward(hf, back["inputs"].long())
    assert torch.allclose(hf_logits, back["logits"], atol=1e-5), "HF export does not match"
    print(f"grads: loss {loss:.6f} (ln V = {math.log(CFG.vocab_size):.6f})")
    print("sgd losses   " + " ".join(f"{v:.4f}" for v in sgd[0]))
    print("adamw losses " + " ".join(f"{v:.4f}" for v in adamw[0]))
    print("adamw grad norms " + " ".join(f"{v:.3f}" for v in adamw[1]))
    print(f"eval mean loss {eval_loss:.6f}")
    for root, _, files in sorted(os.walk(OUT)):
        for name in sorted(files):
            p = os.path.join(root, name)
            print(f"  {os.path.relpath(p, OUT):34s} {os.path.getsize(p):8d} bytes")


if __name__ == "__main__":
    main()
