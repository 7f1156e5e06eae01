#!/usr/bin/python3
"""Hugging Face GPT-2 checkpoint fixtures, written as transformers' save_pretrained writes them,
and a check of an exported directory with Hugging Face's GPT-2 semantics in plain torch.

transformers and safetensors cannot be installed here, so both are written out below from their
published behaviour (current transformers, whose GPT-2 mask buffers are non-persistent;
safetensors >= 0.3):

  model.safetensors  GPT2LMHeadModel.save_pretrained(dir) (safe_serialization, the default):
    - names "transformer.wte.weight", "transformer.h.{i}.attn.c_attn.weight", ...; Conv1D
      weights (c_attn, c_proj, c_fc) stored (in, out); the attn.bias / attn.masked_bias buffers
      are non-persistent and not saved; lm_head.weight shares wte's storage and is removed as a
      tied weight (_tied_weights_keys), so the file has no lm_head.weight.
    - metadata {"format": "pt"}.
    - the safetensors library's layout (safetensors/src/tensor.rs, prepare/serialize): tensors
      sorted by dtype, descending in its Dtype enum (... F16 < BF16 < I32 < U32 < F32 < F64 ...),
      then by name; header = compact JSON, "__metadata__" first, then each tensor in data order
      as {"dtype":..,"shape":[..],"data_offsets":[begin,end]}; padded with spaces to a multiple
      of 8 bytes; u64 little-endian header length first.
  config.json        PretrainedConfig.to_json_file: json.dumps(d, indent=2, sort_keys=True)+"\n"
    with GPT2Config's keys (to_diff_dict); "transformers_version" is left out (nothing here is
    transformers).

Writes (deterministic; a rerun rewrites identical bytes):
  tests/fixtures/hf_gpt2_tiny/{config.json,model.safetensors}       F32 weights
  tests/fixtures/hf_gpt2_tiny_bf16/{config.json,model.safetensors}  the same weights rounded to
                                                                    bf16 (torch's rounding)
  tests/fixtures/hf_gpt2_tiny_logits.safetensors   inputs I32 (B,T), logits F32 (B,T,V) of the
      F32 weights by hf_gpt2_forward (Hugging Face's GPT-2 forward), cross-checked here against
      torch_gpt.GPT (Trident's reference model) loaded with the same weights.

Usage:
  /usr/bin/python3 tests/reference/make_hf_fixtures.py            write the fixtures
  /usr/bin/python3 tests/reference/make_hf_fixtures.py --check DIR
      DIR exported by Trident from tests/fixtures/hf_gpt2_tiny (e.g. trident-train --hf
      tests/fixtures/hf_gpt2_tiny --steps 0 --export-hf DIR): checks that its bytes are what
      safetensors writes for its tensors, loads it by Hugging Face's names and semantics and
      compares its logits on the fixture inputs with hf_gpt2_tiny_logits.safetensors (1e-5;
      5e-2 for a bf16 export), and its bytes with the fixture of its dtype.
  /usr/bin/python3 tests/reference/make_hf_fixtures.py --check DIR --against MODEL
      DIR exported from MODEL, a model.safetensors written by trident-train (our names and
      layouts): compares DIR's logits (Hugging Face's semantics) with torch_gpt.GPT's (the
      reference Trident's GPT is tested against) on MODEL's weights, on random tokens.
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_lite  # noqa: E402
from torch_gpt import GPT, GPTConfig, init_gpt_  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
SEED = 4242
CFG = GPTConfig(vocab_size=67, block_size=12, n_layer=2, n_head=2, n_embd=16, ln_eps=1e-5)
B = 2

# safetensors' Dtype enum order (Rust derive(Ord)): data is sorted by it, descending.
_ST_RANK = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32",
            "F32", "F64", "I64", "U64"]
_ST_NAME = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16",
            torch.float64: "F64", torch.int32: "I32", torch.int64: "I64"}
_TORCH = {v: k for k, v in _ST_NAME.items()}


def hf_safetensors_bytes(tensors, metadata):
    """The bytes safetensors.torch.save_file(tensors, path, metadata) writes."""
    items = sorted(tensors.items(),
                   key=lambda kv: (-_ST_RANK.index(_ST_NAME[kv[1].dtype]), kv[0].encode()))
    parts, chunks, offset = [], [], 0
    if metadata is not None:
        parts.append('"__metadata__":' + json.dumps(metadata, separators=(",", ":")))
    for name, t in items:
        t = t.detach().contiguous()
        data = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        info = ('{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}'
                % (_ST_NAME[t.dtype], json.dumps(list(t.shape), separators=(",", ":")),
                   offset, offset + len(data)))
        parts.append(json.dumps(name) + ":" + info)
        chunks.append(data)
        offset += len(data)
    header = ("{" + ",".join(parts) + "}").encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    return struct.pack("<Q", len(header)) + header + b"".join(chunks)


def parse_safetensors(blob):
    """-> (header dict in file order, name -> tensor)."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode())
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = bytearray(data[b:e])
        dt = _TORCH[info["dtype"]]
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    return header, out


def hf_config(cfg, torch_dtype):
    """GPT2Config(...).to_diff_dict() for our sizes, as save_pretrained writes it (sorted)."""
    return {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.0, "bos_token_id": cfg.vocab_size - 1, "embd_pdrop": 0.0,
        "eos_token_id": cfg.vocab_size - 1, "initializer_range": 0.02,
        "layer_norm_epsilon": cfg.ln_eps, "model_type": "gpt2", "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd, "n_head": cfg.n_head, "n_inner": None, "n_layer": cfg.n_layer,
        "n_positions": cfg.block_size, "reorder_and_upcast_attn": False, "resid_pdrop": 0.0,
        "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True,
        "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True, "torch_dtype": torch_dtype,
        "use_cache": True, "vocab_size": cfg.vocab_size,
    }


# Our name -> Hugging Face GPT2LMHeadModel name; Conv1D weights are stored (in, out).
_CONV1D = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight")
_RENAMES = [("blocks.", "h."), (".ln1.", ".ln_1."), (".ln2.", ".ln_2."),
            (".attn.qkv.", ".attn.c_attn."), (".attn.proj.", ".attn.c_proj."),
            (".mlp.fc.", ".mlp.c_fc."), (".mlp.proj.", ".mlp.c_proj.")]


def to_hf_state(ours):
    out = {}
    for name, t in ours.items():
        hf = name
        for a, b in _RENAMES:
            hf = hf.replace(a, b)
        out["transformer." + hf] = t.t().contiguous() if name.endswith(_CONV1D) else t
    return out


def gelu_new(x):
    """transformers.activations.NewGELUActivation."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3.0))))


def hf_gpt2_forward(config, sd, idx):
    """GPT2LMHeadModel.forward(idx).logits as modeling_gpt2 computes it (eager attention, no
    dropout), from a state dict with Hugging Face's names: Conv1D y = x W + b with W (in, out);
    causal mask by torch.where with the dtype's minimum; lm_head.weight is wte's when absent
    (tie_word_embeddings)."""
    p = "transformer." if "transformer.wte.weight" in sd else ""
    C, nh, eps = config["n_embd"], config["n_head"], config["layer_norm_epsilon"]
    hd = C // nh
    Bn, T = idx.shape
    conv1d = lambda x, w, b: torch.addmm(b, x.reshape(-1, x.size(-1)), w).view(  # noqa: E731
        *x.shape[:-1], w.size(-1))
    x = sd[p + "wte.weight"][idx] + sd[p + "wpe.weight"][torch.arange(T)]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T)
    for i in range(config["n_layer"]):
        h = f"{p}h.{i}."
        a = F.layer_norm(x, (C,), sd[h + "ln_1.weight"], sd[h + "ln_1.bias"], eps)
        q, k, v = conv1d(a, sd[h + "attn.c_attn.weight"], sd[h + "attn.c_attn.bias"]).split(C, 2)
        q, k, v = (t.view(Bn, T, nh, hd).permute(0, 2, 1, 3) for t in (q, k, v))
        w = torch.matmul(q, k.transpose(-1, -2)) / torch.full([], v.size(-1) ** 0.5)
        w = torch.where(causal, w, torch.full([], torch.finfo(w.dtype).min)).softmax(-1)
        y = torch.matmul(w, v).permute(0, 2, 1, 3).reshape(Bn, T, C)
        x = x + conv1d(y, sd[h + "attn.c_proj.weight"], sd[h + "attn.c_proj.bias"])
        m = F.layer_norm(x, (C,), sd[h + "ln_2.weight"], sd[h + "ln_2.bias"], eps)
        m = gelu_new(conv1d(m, sd[h + "mlp.c_fc.weight"], sd[h + "mlp.c_fc.bias"]))
        x = x + conv1d(m, sd[h + "mlp.c_proj.weight"], sd[h + "mlp.c_proj.bias"])
    x = F.layer_norm(x, (C,), sd[p + "ln_f.weight"], sd[p + "ln_f.bias"], eps)
    head = sd.get("lm_head.weight", sd[p + "wte.weight"])
    return x @ head.t()


def write_dir(name, config, tensors):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(hf_safetensors_bytes(tensors, {"format": "pt"}))


def make():
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    model = GPT(CFG)
    init_gpt_(model)
    ours = {n: p.detach().clone() for n, p in model.named_parameters()}
    hf = to_hf_state(ours)
    config = hf_config(CFG, "float32")
    write_dir("hf_gpt2_tiny", config, hf)
    write_dir("hf_gpt2_tiny_bf16", hf_config(CFG, "bfloat16"),
              {n: t.to(torch.bfloat16) for n, t in hf.items()})

    g = torch.Generator().manual_seed(SEED + 1)
    inputs = torch.randint(0, CFG.vocab_size, (B, CFG.block_size), generator=g, dtype=torch.int32)
    with torch.no_grad():
        logits = hf_gpt2_forward(config, hf, inputs.long())
        ref, _ = model(inputs.long())
    diff = (logits - ref).abs().max().item()
    assert diff < 1e-5, f"HF-semantics forward differs from torch_gpt.GPT by {diff}"
    safetensors_lite.save_file(
        [("inputs", inputs), ("logits", logits)],
        os.path.join(OUT, "hf_gpt2_tiny_logits.safetensors"),
        {"generator": "tests/reference/make_hf_fixtures.py", "weights": "hf_gpt2_tiny",
         "definition": "GPT2LMHeadModel logits of hf_gpt2_tiny on inputs (B,T) = (2,12)",
         "torch_version": torch.__version__})

    # Self-checks: what was written parses back to the same tensors, in the order written.
    with open(os.path.join(OUT, "hf_gpt2_tiny", "model.safetensors"), "rb") as f:
        header, back = parse_safetensors(f.read())
    assert list(header)[0] == "__metadata__" and list(header)[1:] == sorted(hf)
    assert all(torch.equal(back[n], t) for n, t in hf.items())
    print(f"logits: HF-semantics forward vs torch_gpt.GPT max |diff| {diff:.3g}")
    for name in ("hf_gpt2_tiny", "hf_gpt2_tiny_bf16"):
        for f in ("config.json", "model.safetensors"):
            p = os.path.join(OUT, name, f)
            print(f"  {name}/{f:20s} {os.path.getsize(p):7d} bytes")


def load_exported(d):
    """-> (config, blob, header, tensors) of an exported directory."""
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        blob = f.read()
    header, sd = parse_safetensors(blob)
    return config, blob, header, sd


def check_layout(d, blob, header, sd, config):
    ok = True
    # The layout save_pretrained writes: metadata first, data sorted as safetensors sorts it.
    if list(header)[0] != "__metadata__" or header["__metadata__"] != {"format": "pt"}:
        print("FAIL: header does not start with __metadata__ {format: pt}")
        ok = False
    if blob != hf_safetensors_bytes(sd, {"format": "pt"}):
        print("FAIL: the bytes differ from what safetensors.torch.save_file writes for them")
        ok = False
    if "lm_head.weight" in sd:
        print("note: lm_head.weight present (save_pretrained omits the tied head)")
    print(f"{d}: {len(sd)} tensors, config {config['n_layer']} layers, n_embd "
          f"{config['n_embd']}, vocab {config['vocab_size']}, {config.get('torch_dtype')}")
    return ok


def check(d):
    """Checks a directory exported from hf_gpt2_tiny; exits non-zero on any mismatch."""
    config, blob, header, sd = load_exported(d)
    ok = check_layout(d, blob, header, sd, config)
    ref, _ = safetensors_lite.load_file(os.path.join(OUT, "hf_gpt2_tiny_logits.safetensors"))
    sd32 = {n: t.float() for n, t in sd.items()}
    with torch.no_grad():
        logits = hf_gpt2_forward(config, sd32, ref["inputs"].long())
    diff = (logits - ref["logits"]).abs().max().item()
    bf16 = config.get("torch_dtype") == "bfloat16"
    tol = 5e-2 if bf16 else 1e-5
    print(f"logits vs hf_gpt2_tiny_logits: max |diff| {diff:.3g} (tolerance {tol})")
    ok = ok and diff <= tol
    fixture = "hf_gpt2_tiny_bf16" if bf16 else "hf_gpt2_tiny"
    with open(os.path.join(OUT, fixture, "model.safetensors"), "rb") as f:
        same = f.read() == blob
    print("model.safetensors " + ("identical to" if same else "DIFFERS from") +
          f" tests/fixtures/{fixture}/model.safetensors")
    ok = ok and same
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def check_against(d, model_path):
    """Compares an exported directory's logits with torch_gpt.GPT on the weights it came from."""
    torch.set_num_threads(max(1, os.cpu_count() // 2))
    config, blob, header, sd = load_exported(d)
    ok = check_layout(d, blob, header, sd, config)
    ours, meta = safetensors_lite.load_file(model_path)
    cfg = GPTConfig(vocab_size=config["vocab_size"], block_size=config["n_positions"],
                    n_layer=config["n_layer"], n_head=config["n_head"], n_embd=config["n_embd"],
                    ln_eps=config["layer_norm_epsilon"])
    model = GPT(cfg)
    rows = ours["wte.weight"].shape[0]
    if rows != cfg.vocab_size:  # a padded vocabulary: the export keeps the real rows
        print(f"{model_path}: wte has {rows} rows, the export {cfg.vocab_size}")
        ours["wte.weight"] = ours["wte.weight"][:cfg.vocab_size]
    model.load_state_dict(ours)
    g = torch.Generator().manual_seed(SEED + 2)
    T = min(64, cfg.block_size)
    idx = torch.randint(0, cfg.vocab_size, (2, T), generator=g)
    with torch.no_grad():
        want, _ = model(idx)
        got = hf_gpt2_forward(config, {n: t.float() for n, t in sd.items()}, idx)
    diff = (got - want).abs().max().item()
    scale = want.abs().max().item()
    tol = (5e-2 if config.get("torch_dtype") == "bfloat16" else 1e-5) * max(1.0, scale)
    print(f"logits (2 x {T} random tokens) vs torch_gpt.GPT on {model_path}: max |diff| "
          f"{diff:.3g}, max |logit| {scale:.3g} (tolerance {tol:.3g})")
    ok = ok and diff <= tol
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2]))
    elif len(sys.argv) == 5 and sys.argv[1] == "--check" and sys.argv[3] == "--against":
        sys.exit(check_against(sys.argv[2], sys.argv[4]))
    elif len(sys.argv) == 1:
        make()
    else:
        sys.exit(__doc__)
