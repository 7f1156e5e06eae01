"""The reference Llama (Llama 3 style) in PyTorch (1.13, CPU): the spec that Trident's C++ Llama
(models/include/trident/models/llama.hpp) is tested against. `transformers` is not installable
here, so this is a plain torch model with Hugging Face LlamaForCausalLM's parameter names and
semantics (modeling_llama.py, eager attention, no biases, untied head):

  model.embed_tokens.weight                        (V, C)
  model.layers.{i}.input_layernorm.weight          (C)        RMSNorm before attention
  model.layers.{i}.self_attn.q_proj.weight         (H*D, C)   D = C / H
  model.layers.{i}.self_attn.k_proj.weight         (KV*D, C)  grouped-query attention
  model.layers.{i}.self_attn.v_proj.weight         (KV*D, C)
  model.layers.{i}.self_attn.o_proj.weight         (C, H*D)
  model.layers.{i}.post_attention_layernorm.weight (C)        RMSNorm before the MLP
  model.layers.{i}.mlp.gate_proj.weight            (F, C)
  model.layers.{i}.mlp.up_proj.weight              (F, C)
  model.layers.{i}.mlp.down_proj.weight            (C, F)
  model.norm.weight                                (C)
  lm_head.weight                                   (V, C)     untied

  RMSNorm   y = w * x / sqrt(mean(x^2) + eps)
  RoPE      HF's rotate_half: for head dim D and pair index i < D/2, angle = t * theta^(-2i/D),
            out[i] = x[i] cos - x[i + D/2] sin, out[i + D/2] = x[i + D/2] cos + x[i] sin;
            applied to q and k of every head, positions 0..T-1
  GQA       kv head j serves q heads j*H/KV .. (j+1)*H/KV - 1 (HF repeat_kv)
  attention causal, scale 1/sqrt(D)
  MLP       down(silu(gate(x)) * up(x))
  loss      mean cross entropy over all B*T positions
The dtype is whatever the parameters hold: the fixture script runs it in float64 from float32
weights.

Imported by tests/reference/make_llama_fixtures.py.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaConfig:
    vocab_size: int = 64
    max_position_embeddings: int = 16
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    hidden_size: int = 32
    intermediate_size: int = 88
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(T, D, theta, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))  # (D/2)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, D/2)
    emb = torch.cat((angles, angles), dim=-1)  # (T, D)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x, cos, sin):
    """x (B, heads, T, D)."""
    return x * cos + rotate_half(x) * sin


class LlamaAttention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        C, H, KV = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        assert C % H == 0 and H % KV == 0
        self.H, self.KV, self.D, self.theta = H, KV, C // H, cfg.rope_theta
        self.q_proj = nn.Linear(C, H * self.D, bias=False)
        self.k_proj = nn.Linear(C, KV * self.D, bias=False)
        self.v_proj = nn.Linear(C, KV * self.D, bias=False)
        self.o_proj = nn.Linear(H * self.D, C, bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.D).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(B, T, self.KV, self.D).transpose(1, 2)  # (B, KV, T, D)
        v = self.v_proj(x).view(B, T, self.KV, self.D).transpose(1, 2)
        cos, sin = rope_cos_sin(T, self.D, self.theta, x.dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = self.H // self.KV  # repeat_kv: kv head j -> q heads j*rep .. j*rep + rep - 1
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.D)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.H * self.D)
        return self.o_proj(y)


class LlamaMLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        C, Fh = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(C, Fh, bias=False)
        self.up_proj = nn.Linear(C, Fh, bias=False)
        self.down_proj = nn.Linear(Fh, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = LlamaAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = LlamaMLP(cfg)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, idx):
        x = self.embed_tokens(idx)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def forward(self, idx, targets=None):
        """idx (B,T) int64 -> logits (B,T,V) and, with targets, the mean cross entropy."""
        assert idx.shape[1] <= self.cfg.max_position_embeddings
        logits = self.lm_head(self.model(idx))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def init_llama_(model: LlamaForCausalLM, std: float = 0.02, norm_std: float = 0.1,
                qk_std: float = 0.02) -> None:
    """Weights ~ N(0, std) (q_proj/k_proj N(0, qk_std)); RMSNorm weights 1 + N(0, norm_std) so
    that a bug in their gradient shows. Global torch RNG, in named_parameters() order."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(1.0, norm_std)
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                p.normal_(0.0, qk_std)
            else:
                p.normal_(0.0, std)
